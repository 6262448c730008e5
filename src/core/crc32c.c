/*
 * crc32c.c: CRC-32C via ISA-L, with a fallback.
 *
 * ISA-L's crc32_iscsi works on the non-inverted register: to continue a
 * standard CRC, pass ~crc in and invert what comes out. Its length is an int, so
 * long buffers are fed in chunks.
 */
#include "core/crc32c.h"

#include <isa-l/crc.h>
#include <pthread.h>
#include <string.h>

/* Largest piece handed to crc32_iscsi at once: fits its int length. */
#define CRC32C_ISAL_CHUNK (1 << 30)

uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint32_t reg = ~crc;
	while (len > 0) {
		int n = len > CRC32C_ISAL_CHUNK ? CRC32C_ISAL_CHUNK : (int)len;
		reg = crc32_iscsi((unsigned char *)p, n, reg);
		p += n;
		len -= (size_t)n;
	}
	return ~reg;
}

uint32_t crc32c(const void *buf, size_t len)
{
	return crc32c_update(0, buf, len);
}

/* Byte-at-a-time table for the reflected polynomial 0x82F63B78, built once
 * (pthread_once: any thread may be the first to need it). */
static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		table[i] = c;
	}
}

static uint32_t table_update(uint32_t reg, const unsigned char *p, size_t len)
{
	pthread_once(&table_once, table_init);
	while (len--)
		reg = table[(reg ^ *p++) & 0xff] ^ (reg >> 8);
	return reg;
}

uint32_t crc32c_table_update(uint32_t crc, const void *buf, size_t len)
{
	return ~table_update(~crc, buf, len);
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t sse42_update(uint32_t reg, const unsigned char *p, size_t len)
{
	uint64_t r = reg;
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		r = __builtin_ia32_crc32di(r, v);
		p += 8;
		len -= 8;
	}
	uint32_t r32 = (uint32_t)r;
	while (len--)
		r32 = __builtin_ia32_crc32qi(r32, *p++);
	return r32;
}
#endif

uint32_t crc32c_fallback_update(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
#if defined(__x86_64__)
	if (__builtin_cpu_supports("sse4.2"))
		return ~sse42_update(~crc, p, len);
#endif
	return ~table_update(~crc, p, len);
}
