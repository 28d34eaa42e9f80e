/*
 * A tree in its own UTS and IPC namespaces.
 *
 * P unshares a new UTS and a new IPC namespace before anything else, names them (host name,
 * domain name), changes two of the IPC namespace's limits (kernel.msgmni, and
 * fs.mqueue.msg_max, which is per IPC namespace too) and makes two SysV segments in it:
 * U, keyed, that no process attaches (it lives in the namespace alone), and M, private,
 * attached by P; a semaphore set S (keyed, three semaphores with values) and a message
 * queue Q (private, three messages of different types and lengths, one empty, and a
 * byte limit of its own). Then it forks C, which stays in both namespaces.
 * After SIGTERM: P tells C (SIGTERM) to check that it is in P's namespaces and sees the
 * names, then checks the names, the limits, U (found by its key, same id, size and
 * contents), M's contents through P's attach, S's values and mode, and Q's limit and
 * messages, in order (read without taking them: MSG_COPY).
 */
#include "zoo.h"

#include <sched.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>

#define PG 4096
#define U_KEY 0x5a17
#define U_SIZE (3 * PG)
#define M_SIZE (2 * PG + 10)
#define HOST "zoo-uts-ipc"
#define DOMAIN "zoo.domain"
#define MSGMNI "/proc/sys/kernel/msgmni"
#define MSG_MAX "/proc/sys/fs/mqueue/msg_max"

enum {
	HOSTNAME = 1,
	DOMAINNAME,
	IPC_MSGMNI,   /* kernel.msgmni of the IPC namespace */
	MQ_MSG_MAX,   /* fs.mqueue.msg_max of the IPC namespace */
	U_SEGMENT,    /* the unattached segment: key, id, size, contents */
	M_CONTENTS,   /* the attached segment's contents */
	C_SAME_NS,    /* C is in P's namespaces */
	S_VALUES,     /* the semaphore set: key, id, values, mode */
	Q_MESSAGES,   /* the message queue: byte limit, messages in order */
	ITEMS = Q_MESSAGES
};

#define S_KEY 0x5a18
#define Q_BYTES 5000
#ifndef MSG_COPY
#define MSG_COPY 040000
#endif

static const unsigned short s_values[3] = {3, 0, 17};
static const struct {
	long type;
	const char *text;
} q_msgs[3] = {{5, "first message"}, {2, ""}, {9, "third, a little longer than the first"}};

struct zoo_msg {
	long type;
	char text[128];
};

/* Queues message `i` of q_msgs on `q`. */
static void send_msg(int q, int i)
{
	struct zoo_msg m;

	m.type = q_msgs[i].type;
	memcpy(m.text, q_msgs[i].text, strlen(q_msgs[i].text));
	if (msgsnd(q, &m, strlen(q_msgs[i].text), IPC_NOWAIT))
		zoo_die("msgsnd");
}

/* Whether queue `q` holds exactly q_msgs, in order, and has byte limit Q_BYTES. */
static int queue_ok(int q)
{
	struct msqid_ds ds;
	struct zoo_msg m;
	ssize_t n;
	int i;

	if (msgctl(q, IPC_STAT, &ds) || ds.msg_qnum != 3 || ds.msg_qbytes != Q_BYTES)
		return 0;
	for (i = 0; i < 3; i++) {
		n = msgrcv(q, &m, sizeof(m.text), i, MSG_COPY | IPC_NOWAIT);
		if (n != (ssize_t)strlen(q_msgs[i].text) || m.type != q_msgs[i].type ||
		    memcmp(m.text, q_msgs[i].text, (size_t)n))
			return 0;
	}
	return 1;
}

/* Whether set `s` is found by S_KEY, has s_values and mode 0600. */
static int sems_ok(int s)
{
	unsigned short v[3];
	struct semid_ds ds;

	if (semget(S_KEY, 0, 0) != s || semctl(s, 0, IPC_STAT, &ds) || ds.sem_nsems != 3 ||
	    (ds.sem_perm.mode & 0777) != 0600 || semctl(s, 0, GETALL, v))
		return 0;
	return memcmp(v, s_values, sizeof(v)) == 0;
}

static unsigned char pattern(size_t i, unsigned seed)
{
	return (unsigned char)(i * 13 + seed);
}

static void write_num(const char *path, long v)
{
	FILE *f = fopen(path, "w");

	if (!f || fprintf(f, "%ld\n", v) < 0 || fclose(f))
		zoo_die(path);
}

static long read_num(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* The inode of /proc/PID/ns/KIND's namespace, 0 if unreadable. */
static ino_t ns_ino(pid_t pid, const char *kind)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, kind);
	return stat(path, &st) ? 0 : st.st_ino;
}

static int names_are(const char *host, const char *domain)
{
	char h[256] = "", d[256] = "";

	if (gethostname(h, sizeof(h)) || getdomainname(d, sizeof(d)))
		return 0;
	return strcmp(h, host) == 0 && strcmp(d, domain) == 0;
}

/* Flips byte `at` of segment `id` through a short attach of its own. */
static void flip(int id, size_t at)
{
	unsigned char *p = shmat(id, NULL, 0);

	if (p == (void *)-1)
		zoo_die("shmat to flip");
	p[at] ^= 0x40;
	if (shmdt(p))
		zoo_die("shmdt");
}

int main(int argc, char **argv)
{
	unsigned char *m, *u;
	int idu, idm, ids, idq;
	struct msqid_ds qds;
	struct sembuf op = {1, 1, 0};
	struct shmid_ds ds;
	pid_t me, kid;
	size_t i;
	char h[256], d[256];

	zoo_init(argc, argv, ITEMS);
	if (unshare(CLONE_NEWUTS | CLONE_NEWIPC))
		zoo_die("unshare(CLONE_NEWUTS | CLONE_NEWIPC)");
	if (sethostname(HOST, strlen(HOST)) || setdomainname(DOMAIN, strlen(DOMAIN)))
		zoo_die("sethostname/setdomainname");
	write_num(MSGMNI, 123);
	write_num(MSG_MAX, 7);
	idu = shmget(U_KEY, U_SIZE, IPC_CREAT | IPC_EXCL | 0640);
	idm = shmget(IPC_PRIVATE, M_SIZE, IPC_CREAT | 0600);
	if (idu < 0 || idm < 0)
		zoo_die("shmget");
	u = shmat(idu, NULL, 0);
	m = shmat(idm, NULL, 0);
	if (u == (void *)-1 || m == (void *)-1)
		zoo_die("shmat");
	for (i = 0; i < U_SIZE; i++)
		u[i] = pattern(i, 5);
	for (i = 0; i < M_SIZE; i++)
		m[i] = pattern(i, 9);
	if (shmdt(u))
		zoo_die("shmdt u");
	ids = semget(S_KEY, 3, IPC_CREAT | IPC_EXCL | 0600);
	idq = msgget(IPC_PRIVATE, IPC_CREAT | 0640);
	if (ids < 0 || idq < 0)
		zoo_die("semget/msgget");
	if (semctl(ids, 0, SETALL, s_values))
		zoo_die("SETALL");
	if (msgctl(idq, IPC_STAT, &qds))
		zoo_die("msgctl IPC_STAT");
	qds.msg_qbytes = Q_BYTES;
	if (msgctl(idq, IPC_SET, &qds))
		zoo_die("msgctl IPC_SET");
	for (i = 0; i < 3; i++)
		send_msg(idq, (int)i);
	me = getpid();
	kid = zoo_fork_ready();
	if (kid == 0) {
		/* C cannot know when P is ready: it breaks its item at its own ready. */
		if (ZOO_BREAK(C_SAME_NS) && unshare(CLONE_NEWUTS))
			zoo_die("unshare(CLONE_NEWUTS) in C");
		zoo_child_ready();
		zoo_wait();
		ZOO_CHECK(C_SAME_NS,
			  ns_ino(getpid(), "uts") == ns_ino(me, "uts") &&
				  ns_ino(getpid(), "ipc") == ns_ino(me, "ipc"),
			  "C is not in P's UTS and IPC namespaces");
		ZOO_CHECK(ZOO_UNBREAKABLE /* P's names are P's to break */,
			  zoo_corrupt == HOSTNAME || zoo_corrupt == DOMAINNAME ||
				  names_are(HOST, DOMAIN),
			  "C does not see the names");
		return zoo_failures ? 1 : 0;
	}

	zoo_ready();
	if (ZOO_BREAK(HOSTNAME) && sethostname("other", 5))
		zoo_die("sethostname");
	if (ZOO_BREAK(DOMAINNAME) && setdomainname("other", 5))
		zoo_die("setdomainname");
	if (ZOO_BREAK(IPC_MSGMNI))
		write_num(MSGMNI, 124);
	if (ZOO_BREAK(MQ_MSG_MAX))
		write_num(MSG_MAX, 8);
	if (ZOO_BREAK(U_SEGMENT))
		flip(idu, PG + 3);
	if (ZOO_BREAK(M_CONTENTS))
		m[M_SIZE - 1] ^= 1;
	if (ZOO_BREAK(S_VALUES) && semop(ids, &op, 1))
		zoo_die("semop");
	if (ZOO_BREAK(Q_MESSAGES))
		send_msg(idq, 0);
	zoo_wait();

	if (kill(kid, SIGTERM))
		zoo_fail(0, "kill C: %s", strerror(errno));
	zoo_reap(kid, "C");

	h[0] = d[0] = 0;
	gethostname(h, sizeof(h));
	getdomainname(d, sizeof(d));
	ZOO_CHECK(HOSTNAME, strcmp(h, HOST) == 0, "host name %s", h);
	ZOO_CHECK(DOMAINNAME, strcmp(d, DOMAIN) == 0, "domain name %s", d);
	ZOO_CHECK(IPC_MSGMNI, read_num(MSGMNI) == 123, "kernel.msgmni is %ld",
		  read_num(MSGMNI));
	ZOO_CHECK(MQ_MSG_MAX, read_num(MSG_MAX) == 7, "fs.mqueue.msg_max is %ld",
		  read_num(MSG_MAX));
	ZOO_CHECK(ZOO_UNBREAKABLE /* leaving them would change the names too */,
		  ns_ino(me, "uts") != ns_ino(1, "uts") || ns_ino(1, "uts") == 0,
		  "P is in the UTS namespace of pid 1");
	ZOO_CHECK(ZOO_UNBREAKABLE /* leaving it would lose the segments and limits too */,
		  ns_ino(me, "ipc") != ns_ino(1, "ipc") || ns_ino(1, "ipc") == 0,
		  "P is in the IPC namespace of pid 1");
	if (shmget(U_KEY, 0, 0) != idu || shmctl(idu, IPC_STAT, &ds)) {
		zoo_fail(U_SEGMENT, "key %#x no longer names segment %d", U_KEY, idu);
	} else {
		ZOO_CHECK(U_SEGMENT, ds.shm_segsz == U_SIZE && ds.shm_nattch == 0 &&
					     (ds.shm_perm.mode & 0777) == 0640,
			  "U: %zu bytes, %lu attaches, mode %o", (size_t)ds.shm_segsz,
			  (unsigned long)ds.shm_nattch, ds.shm_perm.mode);
		u = shmat(idu, NULL, SHM_RDONLY);
		if (u == (void *)-1) {
			zoo_fail(0, "shmat U: %s", strerror(errno));
		} else {
			for (i = 0; i < U_SIZE; i++)
				if (u[i] != pattern(i, 5)) {
					zoo_fail(U_SEGMENT, "byte %zu of U is %#x", i, u[i]);
					break;
				}
			shmdt(u);
		}
	}
	for (i = 0; i < M_SIZE; i++)
		if (m[i] != pattern(i, 9)) {
			zoo_fail(M_CONTENTS, "byte %zu of M is %#x", i, m[i]);
			break;
		}
	ZOO_CHECK(S_VALUES, sems_ok(ids), "semaphore set %d is not as it was", ids);
	ZOO_CHECK(Q_MESSAGES, queue_ok(idq), "message queue %d is not as it was", idq);
	return zoo_done();
}
