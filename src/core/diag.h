/*
 * diag.h: leveled diagnostics to stderr.
 *
 * One line per event: "2026-11-25T12:00:00.123Z INFO  storage: text". The level
 * threshold is global (config log.level); lines are written with one write(2)
 * so threads do not interleave within a line. Safe from any thread.
 */
#ifndef SLUICE_DIAG_H
#define SLUICE_DIAG_H

enum diag_level { DIAG_DEBUG, DIAG_INFO, DIAG_WARN, DIAG_ERROR };

/* Sets the lowest level printed (default DIAG_INFO). */
void diag_set_level(enum diag_level level);
/* Parses "debug", "info", "warn", "error"; returns 0 or -ERR_INVALID. */
int diag_level_parse(const char *s, enum diag_level *out);
/* Prints one line at level for module, printf-style. */
void diag_log(enum diag_level level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define diag_debug(mod, ...) diag_log(DIAG_DEBUG, (mod), __VA_ARGS__)
#define diag_info(mod, ...) diag_log(DIAG_INFO, (mod), __VA_ARGS__)
#define diag_warn(mod, ...) diag_log(DIAG_WARN, (mod), __VA_ARGS__)
#define diag_error(mod, ...) diag_log(DIAG_ERROR, (mod), __VA_ARGS__)

#endif
