/*
 * cli.h - what the command-line tools (nbxctl, nbxq) share at their edge
 * with the person typing: the exit codes scripts rely on, and the one way
 * a usage error is reported.
 */
#ifndef NBX_CLI_H
#define NBX_CLI_H

#define EXIT_RUNTIME	1	/* the command was right; doing it failed */
#define EXIT_USAGE	2	/* the command line or the configuration is wrong */

/*
 * Prints "PROG: MESSAGE" and a pointer to "PROG --help" on stderr, PROG
 * being the name the program was run as, and returns EXIT_USAGE, so that
 * a parser can `return cli_usage_error(...)`.
 */
int cli_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

#endif
