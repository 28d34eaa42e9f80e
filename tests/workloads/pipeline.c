/*
 * A pipeline `producer | filter | consumer` under a parent P, with data in flight in both
 * pipes, and a regular file opened by P before the forks (one open file description held
 * by all four processes).
 *
 * Set-up, one child after the other (P waits for each one's ready byte):
 *   producer  writes record 'p' to the shared file, 20000 bytes of the stream into pipe A
 *   filter    reads 10000 bytes from A, transforms them, writes them into pipe B
 *   consumer  writes record 'c' to the shared file, reads and hashes 4000 bytes of B
 * so at ready pipe A holds 10000 bytes and pipe B 6000, and the shared offset is 2 records.
 * After SIGTERM (P forwards it): the producer writes record 'q' and the rest of the
 * 1 MiB stream, the filter forwards everything, the consumer writes record 'd' and checks
 * the length and hash of what arrived. P checks the children's exit codes, that the
 * shared offset it sees is 4 records, and that the file holds p, c, then q and d (either
 * order), without overlap.
 */
#include "zoo.h"

#include <sys/prctl.h>
#include <sys/wait.h>

#define STREAM_BYTES (1 << 20)
#define REC 64
#define PRE_PRODUCED 20000
#define PRE_FILTERED 10000
#define PRE_CONSUMED 4000

enum {
	STREAM_LEN = 1, /* the consumer got the whole 1 MiB */
	STREAM_DATA,    /* intact (when whole) */
	OFFSET,         /* P sees the shared offset after four records */
	RECORDS,        /* the shared file holds p, c, then q and d */
	ITEMS = RECORDS
};

static unsigned char stream_byte(uint64_t i)
{
	return (unsigned char)((i * 2654435761ULL) >> 13);
}

static unsigned char transform(unsigned char b, uint64_t i)
{
	return (unsigned char)(b ^ (unsigned char)(i * 131 + 7));
}

static void fnv(uint64_t *h, const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		*h = (*h ^ p[i]) * 0x100000001b3ULL;
}

static void write_all(int fd, const void *buf, size_t len, const char *what)
{
	const unsigned char *p = buf;
	ssize_t n;

	while (len) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			zoo_die(what);
		p += n;
		len -= (size_t)n;
	}
}

/* Reads exactly `len` bytes (fewer only at EOF); returns how many. */
static size_t read_full(int fd, void *buf, size_t len, const char *what)
{
	unsigned char *p = buf;
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = read(fd, p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			zoo_die(what);
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return got;
}

static void record(int fd, char c)
{
	char rec[REC];

	memset(rec, c, sizeof(rec));
	if (write(fd, rec, sizeof(rec)) != sizeof(rec))
		zoo_die("write record");
}

static void die_with_parent(pid_t parent)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL))
		zoo_die("PR_SET_PDEATHSIG");
	if (getppid() != parent)
		_exit(2);
}

static void ready_byte(int fd)
{
	if (write(fd, "x", 1) != 1)
		zoo_die("write ready byte");
	close(fd);
}

static int producer(int out, int sf, int ready)
{
	static unsigned char buf[65536];
	uint64_t i = 0, n, k;

	record(sf, 'p');
	for (k = 0; k < PRE_PRODUCED; k++)
		buf[k] = stream_byte(i + k);
	write_all(out, buf, PRE_PRODUCED, "producer: write");
	i = PRE_PRODUCED;
	ready_byte(ready);
	zoo_wait();
	record(sf, 'q');
	while (i < STREAM_BYTES) {
		n = STREAM_BYTES - i < sizeof(buf) ? STREAM_BYTES - i : sizeof(buf);
		for (k = 0; k < n; k++)
			buf[k] = stream_byte(i + k);
		write_all(out, buf, n, "producer: write");
		i += n;
	}
	close(out);
	return 0;
}

static int filter(int in, int out, int ready)
{
	static unsigned char buf[32768];
	uint64_t i = 0, k;
	size_t n;

	n = read_full(in, buf, PRE_FILTERED, "filter: read");
	if (n != PRE_FILTERED)
		zoo_die("filter: short stream before ready");
	for (k = 0; k < n; k++)
		buf[k] = transform(buf[k], i + k);
	write_all(out, buf, n, "filter: write");
	i += n;
	ready_byte(ready);
	zoo_wait();
	while ((n = read_full(in, buf, sizeof(buf), "filter: read")) > 0) {
		for (k = 0; k < n; k++)
			buf[k] = transform(buf[k], i + k);
		/* The breaks: one byte of the stream wrong, or left out. */
		if (ZOO_BREAK(STREAM_DATA) && i <= 500000 && 500000 < i + n)
			buf[500000 - i] ^= 1;
		if (ZOO_BREAK(STREAM_LEN) && i <= 500000 && 500000 < i + n) {
			write_all(out, buf, 500000 - i, "filter: write");
			write_all(out, buf + 500001 - i, i + n - 500001, "filter: write");
			i += n;
			continue;
		}
		write_all(out, buf, n, "filter: write");
		i += n;
	}
	close(out);
	return 0;
}

static int consumer(int in, int sf, int ready)
{
	static unsigned char buf[32768];
	uint64_t h = 0xcbf29ce484222325ULL, want = 0xcbf29ce484222325ULL, total, i;
	unsigned char b;
	size_t n;

	record(sf, 'c');
	total = read_full(in, buf, PRE_CONSUMED, "consumer: read");
	if (total != PRE_CONSUMED)
		zoo_die("consumer: short stream before ready");
	fnv(&h, buf, PRE_CONSUMED);
	ready_byte(ready);
	zoo_wait();
	record(sf, 'd');
	while ((n = read_full(in, buf, sizeof(buf), "consumer: read")) > 0) {
		fnv(&h, buf, n);
		total += n;
	}
	for (i = 0; i < STREAM_BYTES; i++) {
		b = transform(stream_byte(i), i);
		fnv(&want, &b, 1);
	}
	ZOO_CHECK(STREAM_LEN, total == STREAM_BYTES, "consumer: %llu bytes arrived, want %d",
		  (unsigned long long)total, STREAM_BYTES);
	ZOO_CHECK(STREAM_DATA, total != STREAM_BYTES || h == want,
		  "consumer: stream checksum %#llx, want %#llx", (unsigned long long)h,
		  (unsigned long long)want);
	return zoo_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	char contents[8 * REC + 1], want_a[4 * REC], want_b[4 * REC];
	int a[2], b[2], ready[2], sf;
	pid_t me, prod, filt, cons;
	ssize_t len;
	off_t pos;
	char c;
	char *path;

	zoo_init(argc, argv, ITEMS);
	me = getpid();
	path = zoo_path("pipeline.shared");
	sf = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (sf < 0)
		zoo_die("open shared file");
	if (pipe(a) || pipe(b) || pipe2(ready, O_CLOEXEC))
		zoo_die("pipe");

	prod = fork();
	if (prod < 0)
		zoo_die("fork producer");
	if (prod == 0) {
		die_with_parent(me);
		close(a[0]);
		close(b[0]);
		close(b[1]);
		close(ready[0]);
		return producer(a[1], sf, ready[1]);
	}
	if (read(ready[0], &c, 1) != 1)
		zoo_die("the producer did not get ready");

	filt = fork();
	if (filt < 0)
		zoo_die("fork filter");
	if (filt == 0) {
		die_with_parent(me);
		close(a[1]);
		close(b[0]);
		close(ready[0]);
		return filter(a[0], b[1], ready[1]);
	}
	if (read(ready[0], &c, 1) != 1)
		zoo_die("the filter did not get ready");

	cons = fork();
	if (cons < 0)
		zoo_die("fork consumer");
	if (cons == 0) {
		die_with_parent(me);
		close(a[0]);
		close(a[1]);
		close(b[1]);
		close(ready[0]);
		return consumer(b[0], sf, ready[1]);
	}
	if (read(ready[0], &c, 1) != 1)
		zoo_die("the consumer did not get ready");
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
	close(ready[0]);
	close(ready[1]);

	zoo_ready();
	if (ZOO_BREAK(RECORDS) && pwrite(sf, "x", 1, 0) != 1)
		zoo_die("pwrite");
	zoo_wait();

	if (kill(prod, SIGTERM) || kill(filt, SIGTERM) || kill(cons, SIGTERM))
		zoo_fail(0, "kill: %s", strerror(errno));
	zoo_reap(prod, "the producer");
	zoo_reap(filt, "the filter");
	zoo_reap(cons, "the consumer");

	/* Moved once the children wrote their records (earlier, their records would move). */
	if (ZOO_BREAK(OFFSET))
		lseek(sf, 1, SEEK_CUR);
	pos = lseek(sf, 0, SEEK_CUR);
	ZOO_CHECK(OFFSET, pos == 4 * REC, "shared offset %lld, want %d", (long long)pos, 4 * REC);
	len = zoo_read_file(path, contents, sizeof(contents));
	memset(want_a, 'p', REC);
	memset(want_a + REC, 'c', REC);
	memcpy(want_b, want_a, 2 * REC);
	memset(want_a + 2 * REC, 'q', REC);
	memset(want_a + 3 * REC, 'd', REC);
	memset(want_b + 2 * REC, 'd', REC);
	memset(want_b + 3 * REC, 'q', REC);
	ZOO_CHECK(RECORDS,
		  len == 4 * REC && (memcmp(contents, want_a, 4 * REC) == 0 ||
				     memcmp(contents, want_b, 4 * REC) == 0),
		  "shared file holds %zd bytes, want %d, records %.*s", len, 4 * REC,
		  (int)(len > 0 ? len : 0), contents);
	close(sf);
	unlink(path);
	return zoo_done();
}
