/*
 * fuzz_common.h - what the libFuzzer harnesses of tests/fuzz/ share: the
 * regional schema loaded once, one store per process in /dev/shm seeded
 * with a few records, a scratch directory, and the constants the seed
 * generator (seedgen.c) uses to build inputs that get past the first
 * checks.
 *
 * Each harness file defines `int nbx_fuzz_<name>(const uint8_t *, size_t)`
 * and, only when NBX_LIBFUZZER is defined (the Makefile's fuzz rule does),
 * the libFuzzer entry points.  tests/unit/fuzz_replay_test.c includes every
 * harness file into one translation unit and calls those functions on each
 * corpus file, so everything here is static, prefixed fz_, and guarded.
 *
 * State that outlives one input (the policy, the store, the scratch
 * directory) is made on first use and released by fz_teardown, which is
 * registered with atexit and which the replay test also calls at the end
 * of each test, so neither leaves a directory or a leak behind.  A
 * process that dies without exit handlers (a crash) leaves its scratch
 * directory, named after its pid; the next harness process removes it.
 */
#ifndef NBX_FUZZ_COMMON_H
#define NBX_FUZZ_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "change.h"
#include "conf_file.h"
#include "nbx_err.h"
#include "policy.h"
#include "recon.h"
#include "store.h"
#include "writes.h"

/* The node the harnesses run as, and the peer the session talks to. */
#define FZ_SELF		"ee"
#define FZ_PEER		"lv"
/* The peer's log epoch in the HELLO the session harness feeds first. */
#define FZ_PEER_EPOCH	0x5eedull
/*
 * Stands for this store's own log epoch, which is random: the session
 * harness replaces every msgpack uint64 of this value in its input (the
 * 9 bytes cf 00 00 5e ed 5e ed 5e ed) with the real epoch, so that a
 * SUBSCRIBE can resume from a position of our log.
 */
#define FZ_SELF_EPOCH	0x00005eed5eed5eedull
/* "Now" for every input: fixed, so that a run replays exactly. */
#define FZ_NOW_MS	1700000000000ull
/* A store grown past this is recreated (between inputs, never during). */
#define FZ_STORE_RESET	((uint64_t)256 << 20)
/* The reconciliation sets recon_fuzz answers with: a large and a small. */
#define FZ_RECON_BIG	3000
#define FZ_RECON_SMALL	20

static struct policy *fz_pol;
static struct store *fz_st;
static char fz_dir[64];		/* scratch directory of this process */
static int fz_store_n;		/* stores opened, names the store dirs */
static unsigned fz_inputs;	/* inputs since the last size check */

/* Aborts, which libFuzzer reports as a crash with the input saved. */
static inline void
fz_check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz check failed: %s\n", what);
		abort();
	}
}

/* s is empty, or lies inside p[0..n) (a string borrowed from an input) */
static inline int
fz_inside(struct nbx_str s, const uint8_t *p, size_t n)
{
	return s.n == 0 || ((const uint8_t *)s.p >= p &&
	    (const uint8_t *)s.p + s.n <= p + n);
}

static inline int
fz_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0)
		fprintf(stderr, "fuzz: cannot remove %s\n", path);
	return 0;
}

/* Removes a directory tree, only ever under /dev/shm or /tmp. */
static inline void
fz_rmtree(const char *dir)
{
	if (strncmp(dir, "/dev/shm/", 9) != 0 && strncmp(dir, "/tmp/", 5) != 0)
		return;
	(void)nftw(dir, fz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void fz_teardown(void);

/*
 * Removes the scratch directories of processes that are gone (a crash, or
 * a runner that ended without exit handlers): /dev/shm/nbx-fuzz-PID-*.
 */
static inline void
fz_sweep(const char *base)
{
	char path[PATH_MAX];
	struct dirent *e;
	struct stat sb;
	DIR *d = opendir(base);
	int pid;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (sscanf(e->d_name, "nbx-fuzz-%d-", &pid) != 1 || pid <= 0 ||
		    (kill(pid, 0) != 0 ? errno != ESRCH : 1))
			continue;
		snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
		if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode) &&
		    sb.st_uid == getuid())
			fz_rmtree(path);
	}
	closedir(d);
}

/*
 * The scratch directory of this process, made on first use and removed
 * at exit (fz_teardown).
 */
static inline const char *
fz_scratch(void)
{
	static int registered;

	if (fz_dir[0] == 0) {
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" :
		    "/tmp";

		fz_sweep(base);
		snprintf(fz_dir, sizeof(fz_dir), "%s/nbx-fuzz-%d-XXXXXX", base,
		    (int)getpid());
		if (mkdtemp(fz_dir) == NULL) {
			perror("fuzz: mkdtemp");
			abort();
		}
		if (!registered) {
			registered = 1;
			atexit(fz_teardown);
		}
	}
	return fz_dir;
}

/*
 * conf/schema.conf: $NBX_FUZZ_SCHEMA if set, else relative to the working
 * directory (the repository root under make), else two levels above the
 * executable (build/fuzz/<harness>).
 */
static inline int
fz_schema_path(char *out, size_t len)
{
	const char *env = getenv("NBX_FUZZ_SCHEMA");
	char exe[PATH_MAX];
	ssize_t n;
	char *slash;

	if (env != NULL && env[0] != 0) {
		snprintf(out, len, "%s", env);
		return 0;
	}
	if (access("conf/schema.conf", R_OK) == 0) {
		snprintf(out, len, "conf/schema.conf");
		return 0;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		for (int up = 0; up < 3 && (slash = strrchr(exe, '/')); up++)
			*slash = 0;
		int k = snprintf(out, len, "%s/conf/schema.conf", exe);

		if (k > 0 && (size_t)k < len && access(out, R_OK) == 0)
			return 0;
	}
	return -1;
}

/* The regional schema, loaded once. */
static inline const struct policy *
fz_policy(void)
{
	char path[PATH_MAX], err[512];

	if (fz_pol != NULL)
		return fz_pol;
	if (fz_schema_path(path, sizeof(path)) != 0) {
		fprintf(stderr, "fuzz: conf/schema.conf not found; run from the "
		    "repository root or set NBX_FUZZ_SCHEMA\n");
		abort();
	}
	if (conf_schema_load(path, &fz_pol, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz: %s\n", err);
		abort();
	}
	return fz_pol;
}

/*
 * Local writes every fresh store starts with: records of each collection,
 * with local fields (which must never leave), set fields (which writes.c
 * reads back), a case whose audience holds the peer and one whose
 * audience does not.
 */
static const char *const fz_seed_writes[] = {
	"{\"collection\":\"organisation\",\"id\":\"org-1\",\"fields\":{"
	    "\"name\":\"Tallinn network\",\"country\":\"ee\",\"kind\":\"ngo\","
	    "\"troika_member\":true,\"languages\":[\"et\",\"ru\",\"en\"],"
	    "\"internal_notes\":\"local only\"}}",
	"{\"collection\":\"service\",\"id\":\"shelter-1\",\"fields\":{"
	    "\"name\":\"Tallinn shelter\",\"kind\":\"shelter\",\"capacity\":12,"
	    "\"free_places\":3,\"languages\":\"et, ru\",\"open_24h\":\"yes\","
	    "\"address\":\"local only\",\"notes\":\"local only\"}}",
	"{\"collection\":\"case\",\"id\":\"case-1\",\"audience\":[\"ee\","
	    "\"lv\"],\"fields\":{\"pseudonym\":\"K-1\",\"status\":\"referred\","
	    "\"referral_date\":\"2024-02-29\",\"year_of_birth\":1999,"
	    "\"legal_name\":\"local only\",\"case_notes\":\"local only\"}}",
	"{\"collection\":\"case\",\"id\":\"case-2\",\"audience\":[\"ee\","
	    "\"fi\"],\"fields\":{\"pseudonym\":\"K-2\",\"status\":\"accepted\"}}",
	"{\"collection\":\"training\",\"id\":\"tr-1\",\"fields\":{"
	    "\"title\":\"Identification\",\"kind\":\"webinar\","
	    "\"date\":\"2024-05-01\",\"places\":40}}",
};

/* Applies one local write given as JSON; aborts if it is refused. */
static inline void
fz_seed_write(struct store *st, const char *text)
{
	struct write_batch b;
	struct store_outcome out[64];
	json_error_t je;
	json_t *req = json_loads(text, 0, &je);
	char err[512];

	fz_check(req != NULL, "seed write is JSON");
	memset(&b, 0, sizeof(b));
	if (write_batch_build(&b, WRITE_PUT, fz_policy(), st, FZ_SELF, req,
	    err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz: seed write: %s\n", err);
		abort();
	}
	fz_check(b.n <= 64, "seed write fits");
	fz_check(store_apply(st, fz_policy(), b.chs, b.n, (struct nbx_str){ 0 },
	    NULL, FZ_NOW_MS - 60000, STORE_ATOMIC, out) == 0, "seed applies");
	write_batch_fini(&b);
	json_decref(req);
}

static inline void
fz_store_close(void)
{
	char path[128];

	if (fz_st == NULL)
		return;
	store_close(fz_st);
	fz_st = NULL;
	snprintf(path, sizeof(path), "%s/store-%d", fz_dir, fz_store_n);
	fz_rmtree(path);
}

/*
 * The store of this process (node FZ_SELF), opened and seeded on first
 * use.  A harness whose inputs write to it calls fz_store_fresh before
 * each input (below).
 */
static inline struct store *
fz_store(void)
{
	struct store_opts o = { .node_id = FZ_SELF };
	char path[128], err[512];

	if (fz_st != NULL)
		return fz_st;
	snprintf(path, sizeof(path), "%s/store-%d", fz_scratch(), ++fz_store_n);
	if (store_open(path, &o, &fz_st, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz: store_open %s: %s\n", path, err);
		abort();
	}
	for (size_t i = 0; i < sizeof(fz_seed_writes) /
	    sizeof(fz_seed_writes[0]); i++)
		fz_seed_write(fz_st, fz_seed_writes[i]);
	return fz_st;
}

/* Every 1024 inputs: recreate the store if it grew past FZ_STORE_RESET. */
static inline void
fz_store_tick(void)
{
	struct store_meta m;

	if (fz_st == NULL || ++fz_inputs < 1024)
		return;
	fz_inputs = 0;
	if (store_meta_get(fz_st, &m) == 0 && m.map_used < FZ_STORE_RESET)
		return;
	fz_store_close();
}

/*
 * For harnesses whose inputs write to the store: fz_store_dirty marks the
 * store changed, and fz_store_fresh, called before each input, replaces a
 * changed store by a freshly seeded one, so that every input starts from
 * the same state and a finding replays from its input alone.
 */
static int fz_dirty;

static inline void
fz_store_dirty(void)
{
	fz_dirty = 1;
}

/*
 * NBX_FUZZ_SHARED_STORE=1 keeps one store across inputs instead (faster,
 * and it reaches states no single input builds, but a finding may then
 * need the inputs before it to replay).
 */
static inline void
fz_store_fresh(void)
{
	static int shared = -1;

	if (shared < 0) {
		const char *e = getenv("NBX_FUZZ_SHARED_STORE");

		shared = e != NULL && strcmp(e, "1") == 0;
	}
	if (fz_dirty && !shared)
		fz_store_close();
	fz_dirty = 0;
	fz_store_tick();
}

/* Frees everything above and removes the scratch directory. */
static inline void
fz_teardown(void)
{
	fz_store_close();
	policy_free(fz_pol);
	fz_pol = NULL;
	if (fz_dir[0] != 0) {
		fz_rmtree(fz_dir);
		fz_dir[0] = 0;
	}
}

/* A NUL-terminated copy of the input; the caller frees it. */
static inline char *
fz_text(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	fz_check(s != NULL, "malloc");
	if (size > 0)
		memcpy(s, data, size);
	s[size] = 0;
	return s;
}

/*
 * The items of a reconciliation set of n (sorted): kh 16, 32, 48 ...
 * (small numbers, so that bounds a fuzzer writes cut them), every 50th
 * repeating the kh before it with another vh (a hash collision), and kh
 * 0 and UINT64_MAX at the ends.  variant != 0 is a peer's view of the
 * same set: every 97th item changed, every 101st gone, and one more
 * item, so that the seeds seedgen builds from it differ here and there.
 * Returns the number of items written to v (at most n + 1).
 */
static inline size_t
fz_recon_items(struct recon_item *v, size_t n, int variant)
{
	size_t m = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t h = (uint64_t)i * 0x9E3779B97F4A7C15ull + 1;
		uint64_t idx = i;

		if (variant && i % 101 == 100)
			continue;
		v[m].kh = i == 0 ? 0 : i == n - 1 ? UINT64_MAX :
		    16 * (uint64_t)(i % 50 == 49 ? i - 1 : i);
		if (variant && i % 97 == 96)
			h = ~h;
		memcpy(v[m].vh, &h, 8);
		memcpy(v[m].vh + 8, &idx, 8);
		m++;
	}
	if (variant)
		v[m++] = (struct recon_item){ .kh = 16 * (uint64_t)n / 2 + 1 };
	recon_sort(v, m);
	return m;
}

#ifdef NBX_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);
#endif

/*
 * The libFuzzer entry points of a harness whose body is `body` and whose
 * one-time set-up is the expression `init` (only with NBX_LIBFUZZER; the
 * replay test calls the bodies directly).
 */
#ifdef NBX_LIBFUZZER
#define NBX_FUZZ_MAIN(body, init)					\
int LLVMFuzzerInitialize(int *argc, char ***argv);			\
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);		\
int									\
LLVMFuzzerInitialize(int *argc, char ***argv)				\
{									\
	(void)argc;							\
	(void)argv;							\
	init;								\
	return 0;							\
}									\
int									\
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)		\
{									\
	return body(data, size);					\
}
#else
#define NBX_FUZZ_MAIN(body, init)
#endif

#endif
