/* err.c: descriptions of ERR_* codes and errno values. */
#include "core/err.h"

#include <stdlib.h>
#include <string.h>

const char *err_str(int code)
{
	if (code < 0)
		code = -code;
	switch (code) {
	case ERR_OK: return "ok";
	case ERR_AGAIN: return "need more data";
	case ERR_MALFORMED: return "malformed input";
	case ERR_CORRUPT: return "corrupt data";
	case ERR_TOO_LARGE: return "too large";
	case ERR_NOMEM: return "out of memory";
	case ERR_NOSPC: return "no space left on device";
	case ERR_IO: return "I/O error";
	case ERR_NOT_FOUND: return "not found";
	case ERR_EXISTS: return "already exists";
	case ERR_INVALID: return "invalid argument";
	case ERR_RANGE: return "out of range";
	case ERR_CLOSED: return "closed";
	case ERR_UNSUPPORTED: return "unsupported";
	case ERR_SEQUENCE: return "sequence number out of order";
	case ERR_FENCED: return "producer epoch fenced";
	default:
		if (code < ERR_AGAIN)
			return strerror(code);
		return "unknown error";
	}
}
