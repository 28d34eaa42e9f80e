/*
 * fault_tree: the tree the fault-injection tests dump and restore again and again
 * (tests/it/fault_walk.rs). Three processes, each with a worker thread, joined by a pipe,
 * a unix socket pair and shared anonymous memory; the root also holds a deleted file and
 * an attached SysV segment marked removed, so a restore makes a ghost file and a segment.
 *
 *   root ──pipe──< child1 (writes 1, 2, 3, ... into the pipe)
 *   root ──socketpair── child2 (answers each number n with n + 1)
 *   root ──TCP on loopback── child2 (the same; dumped with --tcp-established)
 *   shared anonymous page: one counter per process; SysV page: root's own counter
 *   every process: a worker thread counting in the shared page
 *
 * The root checks everything it receives (the pipe's numbers in order, each answer n + 1,
 * the deleted file's and the SysV segment's contents) and counts a "round" each time every
 * part made progress since the last round: the pipe, the socket, each process's counter,
 * each worker. It writes `round=<n> fails=<m>` into the status file (a fixed-size record
 * at offset 0) after every round; progress is the round growing, with no deadline: a slow
 * machine only makes rounds slower.
 *
 * Environment: FT_READY, a FIFO that gets "ready\n" after the first round; FT_STATUS, the
 * status file; FT_DIR, a directory for the deleted file; FT_MEM_MB (optional): the root
 * also fills that many MiB of private memory with a pattern, checked at SIGTERM.
 * SIGTERM: the root stops its children and exits 0 when no check failed, else 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct shared {
	_Atomic uint64_t count[3];  /* each process's main loop */
	_Atomic uint64_t worker[3]; /* each process's worker thread */
};

static struct shared *sh;
static volatile sig_atomic_t term;
static const char DELETED_TEXT[] = "fault_tree keeps this deleted file open\n";

static void die(const char *what)
{
	fprintf(stderr, "ERROR: fault_tree: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void on_term(int sig)
{
	(void)sig;
	term = 1;
}

static void *worker(void *arg)
{
	int me = (int)(intptr_t)arg;

	for (;;) {
		atomic_fetch_add(&sh->worker[me], 1);
		usleep(1000);
	}
	return NULL;
}

static void start_worker(int me)
{
	pthread_t t;

	if (pthread_create(&t, NULL, worker, (void *)(intptr_t)me))
		die("pthread_create");
}

/* Reads or writes exactly n bytes, through EINTR; false at EOF or on error. */
static int full(int fd, void *buf, size_t n, int wr)
{
	char *p = buf;

	while (n) {
		ssize_t r = wr ? write(fd, p, n) : read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		p += r;
		n -= (size_t)r;
	}
	return 1;
}

static void child1(int wfd)
{
	uint64_t n = 0;

	start_worker(1);
	for (;;) {
		n++;
		if (!full(wfd, &n, sizeof(n), 1))
			exit(0);
		atomic_fetch_add(&sh->count[1], 1);
	}
}

static void child2(int sk, int tk)
{
	uint64_t n;

	start_worker(2);
	for (;;) {
		for (int i = 0; i < 2; i++) {
			int s = i ? tk : sk;

			if (!full(s, &n, sizeof(n), 0))
				exit(0);
			n++;
			if (!full(s, &n, sizeof(n), 1))
				exit(0);
		}
		atomic_fetch_add(&sh->count[2], 1);
	}
}

/* A TCP connection on loopback: its two ends. */
static void tcp_pair(int t[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&a, len) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		die("the TCP listener");
	t[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (t[0] < 0 || connect(t[0], (struct sockaddr *)&a, len))
		die("connect");
	t[1] = accept(l, NULL, NULL);
	if (t[1] < 0)
		die("accept");
	close(l);
}

int main(void)
{
	const char *ready = getenv("FT_READY"), *status = getenv("FT_STATUS");
	const char *dir = getenv("FT_DIR"), *mem_mb = getenv("FT_MEM_MB");
	size_t mem_len = mem_mb ? (size_t)strtoul(mem_mb, NULL, 10) << 20 : 0;
	uint64_t *mem = NULL;
	int p[2], sk[2], tk[2], stfd, delfd, shmid, fails = 0;
	uint64_t round = 0, want = 0, sent = 0, last[8] = {0};
	_Atomic uint64_t *sysv;
	char path[4096], rec[64];
	struct sigaction sa;
	pid_t c1, c2;

	if (!ready || !status || !dir) {
		fprintf(stderr, "ERROR: fault_tree: FT_READY, FT_STATUS and FT_DIR are needed\n");
		return 2;
	}
	setsid();
	sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap");
	if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, sk))
		die("pipe/socketpair");
	tcp_pair(tk);
	c1 = fork();
	if (c1 < 0)
		die("fork");
	if (c1 == 0) {
		close(p[0]);
		close(sk[0]);
		close(sk[1]);
		close(tk[0]);
		close(tk[1]);
		child1(p[1]);
	}
	c2 = fork();
	if (c2 < 0)
		die("fork");
	if (c2 == 0) {
		close(p[0]);
		close(p[1]);
		close(sk[0]);
		close(tk[0]);
		child2(sk[1], tk[1]);
	}
	close(p[1]);
	close(sk[1]);
	close(tk[1]);

	/* Root only: a deleted file and a removed SysV segment, both still in use. */
	snprintf(path, sizeof(path), "%s/deleted", dir);
	delfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (delfd < 0 || !full(delfd, (void *)DELETED_TEXT, sizeof(DELETED_TEXT), 1) ||
	    unlink(path))
		die("the deleted file");
	shmid = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
	if (shmid < 0)
		die("shmget");
	sysv = shmat(shmid, NULL, 0);
	if (sysv == (void *)-1 || shmctl(shmid, IPC_RMID, NULL))
		die("shmat");
	if (mem_len) {
		mem = mmap(NULL, mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			die("mmap of the memory to check");
		for (size_t i = 0; i < mem_len / 8; i++)
			mem[i] = i * 0x9e3779b97f4a7c15ull;
	}
	stfd = open(status, O_WRONLY);
	if (stfd < 0)
		die("the status file");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	start_worker(0);

	while (!term) {
		uint64_t n, now[8];
		char buf[sizeof(DELETED_TEXT)];
		int i;

		if (!full(p[0], &n, sizeof(n), 0)) {
			if (term)
				break;
			fails++;
			fprintf(stderr, "FAIL: the pipe from child 1 ended\n");
			break;
		}
		if (n != ++want) {
			fails++;
			fprintf(stderr, "FAIL: pipe gave %llu, want %llu\n",
				(unsigned long long)n, (unsigned long long)want);
			want = n;
		}
		sent++;
		if (!full(sk[0], &sent, sizeof(sent), 1) || !full(sk[0], &n, sizeof(n), 0)) {
			if (term)
				break;
			fails++;
			fprintf(stderr, "FAIL: the socket to child 2 ended\n");
			break;
		}
		if (n != sent + 1) {
			fails++;
			fprintf(stderr, "FAIL: child 2 answered %llu to %llu\n",
				(unsigned long long)n, (unsigned long long)sent);
		}
		if (!full(tk[0], &sent, sizeof(sent), 1) || !full(tk[0], &n, sizeof(n), 0)) {
			if (term)
				break;
			fails++;
			fprintf(stderr, "FAIL: the TCP connection to child 2 ended\n");
			break;
		}
		if (n != sent + 1) {
			fails++;
			fprintf(stderr, "FAIL: child 2 answered %llu to %llu on TCP\n",
				(unsigned long long)n, (unsigned long long)sent);
		}
		atomic_fetch_add(&sh->count[0], 1);
		atomic_fetch_add(sysv, 1);
		for (i = 0; i < 3; i++) {
			now[i] = atomic_load(&sh->count[i]);
			now[3 + i] = atomic_load(&sh->worker[i]);
		}
		now[6] = want;
		now[7] = atomic_load(sysv);
		for (i = 0; i < 8; i++)
			if (now[i] <= last[i])
				break;
		if (i < 8)
			continue;
		memcpy(last, now, sizeof(last));
		if (pread(delfd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) ||
		    memcmp(buf, DELETED_TEXT, sizeof(buf))) {
			fails++;
			fprintf(stderr, "FAIL: the deleted file changed\n");
		}
		round++;
		memset(rec, ' ', sizeof(rec));
		snprintf(rec, sizeof(rec) - 1, "round=%llu fails=%d", (unsigned long long)round,
			 fails);
		rec[sizeof(rec) - 1] = '\n';
		if (pwrite(stfd, rec, sizeof(rec), 0) != (ssize_t)sizeof(rec))
			die("writing the status");
		if (round == 1) {
			int r = open(ready, O_WRONLY);
			if (r < 0 || !full(r, "ready\n", 6, 1))
				die("the ready fifo");
			close(r);
		}
	}
	for (size_t i = 0; i < mem_len / 8; i++) {
		if (mem[i] != i * 0x9e3779b97f4a7c15ull) {
			fails++;
			fprintf(stderr, "FAIL: memory changed at offset %zu\n", i * 8);
			break;
		}
	}
	kill(c1, SIGKILL);
	kill(c2, SIGKILL);
	waitpid(c1, NULL, 0);
	waitpid(c2, NULL, 0);
	if (fails) {
		fprintf(stderr, "fault_tree: %d checks failed\n", fails);
		return 1;
	}
	fprintf(stderr, "PASS\n");
	return 0;
}
