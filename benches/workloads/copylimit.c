/*
 * The dump bench's copy limit: copies LEN bytes at ADDR of process PID into a fresh file
 * DIR/limit.raw (at offset 0, like a pages image), one way after the other, and prints one
 * line per way: "WAY ok SECONDS" (from creating the file to closing it, no fsync; the
 * file is then removed) or "WAY unsupported WHY" (the kernel refused it; measured, not
 * assumed).
 *
 * usage: copylimit PID ADDR LEN DIR WAY...
 *
 * Ways (CHUNK, PIECE with a K or M suffix; T threads, each taking the next chunk):
 *   pvr:CHUNK:PIECE:T    process_vm_readv CHUNK at a time into a buffer, pwrite in PIECEs
 *   mem:CHUNK:PIECE:T    pread of /proc/PID/mem CHUNK at a time, pwrite in PIECEs
 *   direct:CHUNK:T       process_vm_readv into an aligned buffer, pwrite CHUNK with O_DIRECT
 *   mmap:CHUNK:T         process_vm_readv straight into the file mapped MAP_SHARED
 *   mmap-pop:CHUNK:T     the same, each chunk first faulted in with MADV_POPULATE_WRITE
 *   splice:PIECE         splice /proc/PID/mem -> pipe -> file (pipe grown to PIECE)
 *   sendfile:PIECE       sendfile /proc/PID/mem -> file
 *   cfr:PIECE            copy_file_range /proc/PID/mem -> file
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

enum kind { PVR, MEM, DIRECT, MMAP, MMAP_POP, SPLICE, SENDFILE, CFR };

struct way {
	enum kind kind;
	size_t chunk, piece;
	int threads;
};

static pid_t pid;
static uint64_t addr, len;
static char path[4096], mempath[64];

/* One copy in progress, shared by its threads. */
struct job {
	const struct way *w;
	int fd, memfd;
	unsigned char *map;
	uint64_t next; /* next chunk, taken with __atomic_fetch_add */
	int err;       /* first errno, 0 if none */
	const char *what;
};

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void fail(struct job *j, const char *what)
{
	int zero = 0;

	if (__atomic_compare_exchange_n(&j->err, &zero, errno ? errno : EIO, 0, __ATOMIC_SEQ_CST,
					__ATOMIC_SEQ_CST))
		j->what = what;
}

/* process_vm_readv of n bytes at off into buf; 0 or -1. */
static int readv_remote(uint64_t off, void *buf, size_t n)
{
	struct iovec l = { buf, n }, r = { (void *)(uintptr_t)(addr + off), n };
	ssize_t got = process_vm_readv(pid, &l, 1, &r, 1, 0);

	if (got == (ssize_t)n)
		return 0;
	if (got >= 0)
		errno = EIO;
	return -1;
}

static int write_all(int fd, const unsigned char *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, off);

		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		p += w;
		n -= w;
		off += w;
	}
	return 0;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	const struct way *w = j->w;
	unsigned char *buf = NULL;
	uint64_t nchunks = (len + w->chunk - 1) / w->chunk;

	if (w->kind == PVR || w->kind == MEM || w->kind == DIRECT) {
		if (posix_memalign((void **)&buf, 4096, w->chunk)) {
			fail(j, "posix_memalign");
			return NULL;
		}
	}
	for (;;) {
		uint64_t c = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		uint64_t off = c * w->chunk;
		size_t n, p;

		if (c >= nchunks || __atomic_load_n(&j->err, __ATOMIC_RELAXED))
			break;
		n = len - off < w->chunk ? len - off : w->chunk;
		switch (w->kind) {
		case PVR:
		case DIRECT:
			if (readv_remote(off, buf, n)) {
				fail(j, "process_vm_readv");
				goto out;
			}
			for (p = 0; p < n; p += w->piece) {
				size_t k = n - p < w->piece ? n - p : w->piece;

				if (write_all(j->fd, buf + p, k, off + p)) {
					fail(j, "pwrite");
					goto out;
				}
			}
			break;
		case MEM:
			for (p = 0; p < n;) {
				ssize_t r = pread(j->memfd, buf + p, n - p, addr + off + p);

				if (r <= 0) {
					if (r == 0)
						errno = EIO;
					fail(j, "pread /proc/PID/mem");
					goto out;
				}
				p += r;
			}
			for (p = 0; p < n; p += w->piece) {
				size_t k = n - p < w->piece ? n - p : w->piece;

				if (write_all(j->fd, buf + p, k, off + p)) {
					fail(j, "pwrite");
					goto out;
				}
			}
			break;
		case MMAP_POP:
			if (madvise(j->map + off, n, MADV_POPULATE_WRITE)) {
				fail(j, "madvise(MADV_POPULATE_WRITE)");
				goto out;
			}
			/* fall through */
		case MMAP:
			if (readv_remote(off, j->map + off, n)) {
				fail(j, "process_vm_readv");
				goto out;
			}
			break;
		default:
			break;
		}
	}
out:
	free(buf);
	return NULL;
}

/* splice, sendfile or copy_file_range of the whole range, one thread. */
static void stream(struct job *j)
{
	const struct way *w = j->w;
	int pfd[2] = { -1, -1 };
	loff_t in = addr, out = 0;
	uint64_t done = 0;

	if (w->kind == SPLICE) {
		if (pipe(pfd)) {
			fail(j, "pipe");
			return;
		}
		fcntl(pfd[1], F_SETPIPE_SZ, (int)w->piece);
	}
	while (done < len) {
		size_t want = len - done < w->piece ? len - done : w->piece;
		ssize_t got;

		switch (w->kind) {
		case SPLICE:
			got = splice(j->memfd, &in, pfd[1], NULL, want, SPLICE_F_MOVE);
			if (got > 0) {
				ssize_t left = got;

				while (left > 0) {
					ssize_t o = splice(pfd[0], NULL, j->fd, &out, left, SPLICE_F_MOVE);

					if (o <= 0) {
						fail(j, "splice pipe -> file");
						goto out;
					}
					left -= o;
				}
			}
			break;
		case SENDFILE:
			got = sendfile(j->fd, j->memfd, &in, want);
			break;
		default:
			got = copy_file_range(j->memfd, &in, j->fd, &out, want, 0);
			break;
		}
		if (got <= 0) {
			if (got == 0)
				errno = EIO;
			fail(j, w->kind == SPLICE     ? "splice /proc/PID/mem -> pipe"
				: w->kind == SENDFILE ? "sendfile"
						      : "copy_file_range");
			break;
		}
		done += got;
	}
out:
	if (pfd[0] >= 0) {
		close(pfd[0]);
		close(pfd[1]);
	}
}

static size_t size_arg(const char *s)
{
	char *end;
	size_t v = strtoull(s, &end, 0);

	if (*end == 'K')
		v <<= 10;
	else if (*end == 'M')
		v <<= 20;
	return v;
}

static int parse(const char *s, struct way *w)
{
	char name[32], a[16] = "", b[16] = "", c[16] = "";
	int n = sscanf(s, "%31[^:]:%15[^:]:%15[^:]:%15s", name, a, b, c);

	memset(w, 0, sizeof(*w));
	w->threads = 1;
	if (n == 4 && (!strcmp(name, "pvr") || !strcmp(name, "mem"))) {
		w->kind = name[0] == 'p' ? PVR : MEM;
		w->chunk = size_arg(a);
		w->piece = size_arg(b);
		w->threads = atoi(c);
	} else if (n == 3 && (!strcmp(name, "direct") || !strcmp(name, "mmap") ||
			      !strcmp(name, "mmap-pop"))) {
		w->kind = name[0] == 'd' ? DIRECT : name[4] ? MMAP_POP : MMAP;
		w->chunk = size_arg(a);
		w->piece = w->chunk;
		w->threads = atoi(b);
	} else if (n == 2 && (!strcmp(name, "splice") || !strcmp(name, "sendfile") ||
			      !strcmp(name, "cfr"))) {
		w->kind = name[0] == 'c' ? CFR : name[1] == 'p' ? SPLICE : SENDFILE;
		w->piece = size_arg(a);
		w->chunk = w->piece;
	} else {
		return -1;
	}
	if (!w->chunk || !w->piece || w->threads < 1 || w->threads > 64)
		return -1;
	return 0;
}

static void run(const char *name, const struct way *w)
{
	struct job j = { .w = w, .fd = -1, .memfd = -1 };
	pthread_t t[64];
	double t0, secs = 0;
	int i, flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;

	if (w->kind != PVR && w->kind != DIRECT && w->kind != MMAP && w->kind != MMAP_POP) {
		j.memfd = open(mempath, O_RDONLY | O_CLOEXEC);
		if (j.memfd < 0) {
			printf("%s unsupported open %s: %s\n", name, mempath, strerror(errno));
			return;
		}
	}
	if (w->kind == DIRECT)
		flags |= O_DIRECT;
	unlink(path);
	t0 = now();
	j.fd = open(path, flags, 0600);
	if (j.fd < 0) {
		fail(&j, "open");
		goto done;
	}
	if (w->kind == MMAP || w->kind == MMAP_POP) {
		if (ftruncate(j.fd, len)) {
			fail(&j, "ftruncate");
			goto done;
		}
		j.map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, j.fd, 0);
		if (j.map == MAP_FAILED) {
			j.map = NULL;
			fail(&j, "mmap");
			goto done;
		}
	}
	if (w->kind == SPLICE || w->kind == SENDFILE || w->kind == CFR) {
		stream(&j);
	} else {
		for (i = 0; i < w->threads; i++)
			if (pthread_create(&t[i], NULL, worker, &j)) {
				fail(&j, "pthread_create");
				break;
			}
		while (i-- > 0)
			pthread_join(t[i], NULL);
	}
	if (j.map)
		munmap(j.map, len);
	close(j.fd);
	j.fd = -1;
	secs = now() - t0;
done:
	if (j.fd >= 0)
		close(j.fd);
	if (j.memfd >= 0)
		close(j.memfd);
	unlink(path);
	if (j.err)
		printf("%s unsupported %s: %s\n", name, j.what, strerror(j.err));
	else
		printf("%s ok %.6f\n", name, secs);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct way w;
	int i;

	if (argc < 6) {
		fprintf(stderr, "usage: copylimit PID ADDR LEN DIR WAY...\n");
		return 2;
	}
	pid = atoi(argv[1]);
	addr = strtoull(argv[2], NULL, 0);
	len = strtoull(argv[3], NULL, 0);
	snprintf(path, sizeof(path), "%s/limit.raw", argv[4]);
	snprintf(mempath, sizeof(mempath), "/proc/%d/mem", pid);
	for (i = 5; i < argc; i++) {
		if (parse(argv[i], &w)) {
			fprintf(stderr, "copylimit: bad way %s\n", argv[i]);
			return 2;
		}
		run(argv[i], &w);
	}
	return 0;
}
