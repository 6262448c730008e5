/*
 * err.h: the error codes every Sluice module returns.
 *
 * Fallible functions return int: 0 on success or a negative ERR_* code (or a
 * negative errno where an OS call failed and nothing better applies; the two
 * ranges do not overlap, ERR_* start at 1000). Protocol front ends map these to
 * their own codes in one place each.
 */
#ifndef SLUICE_ERR_H
#define SLUICE_ERR_H

enum err_code {
	ERR_OK = 0,
	ERR_AGAIN = 1000,     /* need more bytes / try later (like nginx's NGX_AGAIN) */
	ERR_MALFORMED,        /* bytes do not parse */
	ERR_CORRUPT,          /* stored data fails a check (CRC, length, magic) */
	ERR_TOO_LARGE,        /* a size exceeds a configured limit */
	ERR_NOMEM,            /* allocation failed */
	ERR_NOSPC,            /* disk full */
	ERR_IO,               /* an I/O call failed */
	ERR_NOT_FOUND,        /* no such object */
	ERR_EXISTS,           /* object already exists */
	ERR_INVALID,          /* bad argument or configuration value */
	ERR_RANGE,            /* offset or index out of range */
	ERR_CLOSED,           /* object is closed or shutting down */
	ERR_UNSUPPORTED,      /* valid but not supported */
	ERR_SEQUENCE,         /* idempotent producer: sequence out of order */
	ERR_FENCED,           /* idempotent producer: epoch older than the current one */
};

/* Returns a static description of a code (negative or positive, ERR_* or errno). */
const char *err_str(int code);

#endif
