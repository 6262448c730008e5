/*
 * crc32c.h: CRC-32C (Castagnoli), the checksum of Kafka RecordBatch v2.
 *
 * The default implementation is ISA-L's crc32_iscsi (tens of GB/s); a small
 * SSE4.2 (or table-driven, off x86) fallback exists for testing and for builds
 * without ISA-L. Both compute the standard value: crc32c("123456789") = 0xE3069283.
 */
#ifndef SLUICE_CRC32C_H
#define SLUICE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC-32C over len bytes; start with crc = 0. */
uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len);
/* CRC-32C of one buffer. */
uint32_t crc32c(const void *buf, size_t len);
/* The fallback implementation (SSE4.2 when the CPU has it, else a table). */
uint32_t crc32c_fallback_update(uint32_t crc, const void *buf, size_t len);
/* The portable table-driven implementation the fallback uses off SSE4.2 (slow;
 * public so tests can check it on machines that have SSE4.2). */
uint32_t crc32c_table_update(uint32_t crc, const void *buf, size_t len);

#endif
