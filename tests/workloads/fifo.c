/* Named pipes opened by path. FIFO "a": a non-blocking read end and a write end, sized to
 * 128 KiB, with 100000 unread bytes, both ends inherited by a child. FIFO "b": only a
 * write end (its read-write opener closed), with 3000 unread bytes. After the restore the
 * child (woken by the SIGTERM its parent forwards) writes "kid!" through its write end of
 * "a"; the parent then reads the 100000 bytes intact (queued once, not once per holder)
 * followed by "kid!", the pipe size and flags are kept, "a" still carries data from its
 * write end to its read end, and the bytes of "b" come out intact. */
#include "zoo.h"
#include <sys/prctl.h>
#include <sys/wait.h>

#define A_BYTES 100000
#define B_BYTES 3000

enum {
	A_DATA = 1,     /* the 100000 bytes of a, intact */
	KID_WRITES,     /* then "kid!", written by the child through its inherited end */
	A_DRAINED,      /* and nothing more */
	A_SIZE,         /* the pipe size of a */
	A_READ_FLAGS,   /* read-only, non-blocking */
	A_WRITE_FLAGS,  /* write-only, blocking */
	A_PATH,         /* the read end is the fifo at its path */
	A_CARRIES,      /* a write to the write end comes out of the read end */
	B_DATA,         /* the 3000 bytes of b, intact */
	B_WRITE_FLAGS,  /* write-only, blocking */
	ITEMS = B_WRITE_FLAGS
};

static size_t read_all(int fd, unsigned char *buf, size_t cap)
{
	size_t off = 0;
	ssize_t n;

	while (off < cap && (n = read(fd, buf + off, cap - off)) > 0)
		off += (size_t)n;
	return off;
}

int main(int argc, char **argv)
{
	static unsigned char a_data[A_BYTES], b_data[B_BYTES], back[A_BYTES + 16];
	char *a, *b, *c;
	int ar, aw, brw, bw, br, flags, f, cr;
	pid_t kid;
	struct stat st, fst;
	size_t got;
	ssize_t n;

	zoo_init(argc, argv, ITEMS);
	a = zoo_path("fifo-a");
	b = zoo_path("fifo-b");
	c = zoo_path("fifo-c");
	if (mkfifo(a, 0600) || mkfifo(b, 0600))
		zoo_die("mkfifo");
	ar = open(a, O_RDONLY | O_NONBLOCK);
	aw = open(a, O_WRONLY);
	brw = open(b, O_RDWR);
	bw = open(b, O_WRONLY);
	if (ar < 0 || aw < 0 || brw < 0 || bw < 0)
		zoo_die("open the fifos");
	if (fcntl(aw, F_SETPIPE_SZ, 131072) < 0)
		zoo_die("F_SETPIPE_SZ");
	zoo_fill(a_data, sizeof(a_data), 7);
	zoo_fill(b_data, sizeof(b_data), 8);
	if (write(aw, a_data, sizeof(a_data)) != sizeof(a_data) ||
	    write(bw, b_data, sizeof(b_data)) != sizeof(b_data))
		zoo_die("fill the fifos");
	close(brw);
	kid = fork();
	if (kid < 0)
		zoo_die("fork");
	if (kid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		zoo_wait();
		ZOO_CHECK(KID_WRITES, write(aw, ZOO_BREAK(KID_WRITES) ? "kid?" : "kid!", 4) == 4,
			  "child: write through its inherited end of fifo a: %s", strerror(errno));
		_exit(zoo_failures ? 1 : 0);
	}

	zoo_ready();
	if (ZOO_BREAK(A_DATA)) {
		/* The first byte out, another one in at the end: as long, but not the same. */
		if (read(ar, back, 1) != 1 || write(aw, "Z", 1) != 1)
			zoo_die("break fifo a");
	}
	if (ZOO_BREAK(A_SIZE) && fcntl(aw, F_SETPIPE_SZ, 262144) < 0)
		zoo_die("F_SETPIPE_SZ");
	if (ZOO_BREAK(A_READ_FLAGS)) {
		/* The same fifo, but read-write. */
		f = open(a, O_RDWR | O_NONBLOCK);
		if (f < 0 || dup2(f, ar) != ar)
			zoo_die("reopen fifo a");
		close(f);
	}
	if (ZOO_BREAK(A_WRITE_FLAGS))
		fcntl(aw, F_SETFL, O_NONBLOCK);
	if (ZOO_BREAK(A_PATH)) {
		if (rename(a, zoo_path("fifo-a.old")) || mkfifo(a, 0600))
			zoo_die("replace fifo a");
	}
	if (ZOO_BREAK(A_CARRIES)) {
		/* P's write end of a becomes one of another fifo, alike but for that (a keeps a
		 * writer at another fd, so its reads still say EAGAIN, not EOF). */
		if (mkfifo(c, 0600) || dup(aw) < 0)
			zoo_die("mkfifo c");
		cr = open(c, O_RDONLY | O_NONBLOCK);
		f = open(c, O_WRONLY);
		if (cr < 0 || f < 0 || fcntl(f, F_SETPIPE_SZ, 131072) < 0 || dup2(f, aw) != aw)
			zoo_die("fifo c");
		close(f);
	}
	if (ZOO_BREAK(B_DATA)) {
		f = open(b, O_RDONLY | O_NONBLOCK);
		if (f < 0 || read(f, back, 1) != 1)
			zoo_die("break fifo b");
		close(f);
	}
	if (ZOO_BREAK(B_WRITE_FLAGS))
		fcntl(bw, F_SETFL, O_NONBLOCK);
	zoo_wait();
	kill(kid, SIGTERM);
	zoo_reap(kid, "the child");

	if (ZOO_BREAK(A_DRAINED)) {
		/* More than read_all() takes below. */
		memset(back, '+', 16);
		if (write(aw, back, 16) != 16)
			zoo_die("write fifo a");
	}
	got = read_all(ar, back, sizeof(back));
	ZOO_CHECK(A_DATA, got >= A_BYTES && memcmp(back, a_data, A_BYTES) == 0,
		  "fifo a: got %zu bytes, want %d intact first", got, A_BYTES);
	ZOO_CHECK(KID_WRITES, got >= A_BYTES + 4 && memcmp(back + A_BYTES, "kid!", 4) == 0,
		  "fifo a: got %zu bytes, want \"kid!\" after the first %d", got, A_BYTES);
	n = read(ar, back, sizeof(back));
	ZOO_CHECK(A_DRAINED, got == A_BYTES + 4 && n == -1 && errno == EAGAIN,
		  "fifo a: %zu bytes and then a read gave %zd, want %d and EAGAIN", got, n,
		  A_BYTES + 4);
	ZOO_CHECK(A_SIZE, fcntl(aw, F_GETPIPE_SZ) == 131072, "fifo a size %d",
		  fcntl(aw, F_GETPIPE_SZ));
	flags = fcntl(ar, F_GETFL);
	ZOO_CHECK(A_READ_FLAGS, (flags & O_ACCMODE) == O_RDONLY && (flags & O_NONBLOCK),
		  "fifo a read end flags %#x", flags);
	flags = fcntl(aw, F_GETFL);
	ZOO_CHECK(A_WRITE_FLAGS, (flags & O_ACCMODE) == O_WRONLY && !(flags & O_NONBLOCK),
		  "fifo a write end flags %#x", flags);
	ZOO_CHECK(A_PATH,
		  stat(a, &st) == 0 && fstat(ar, &fst) == 0 && S_ISFIFO(fst.st_mode) &&
			  st.st_ino == fst.st_ino,
		  "fifo a read end is not the fifo at its path");
	ZOO_CHECK(A_CARRIES,
		  write(aw, "ping", 4) == 4 && read(ar, back, 8) == 4 && memcmp(back, "ping", 4) == 0,
		  "fifo a does not carry data after restore");

	br = open(b, O_RDONLY | O_NONBLOCK);
	if (br < 0)
		zoo_die("open fifo b for reading");
	got = read_all(br, back, sizeof(back));
	ZOO_CHECK(B_DATA, got == B_BYTES && memcmp(back, b_data, B_BYTES) == 0,
		  "fifo b: got %zu bytes, want %d intact", got, B_BYTES);
	flags = fcntl(bw, F_GETFL);
	ZOO_CHECK(B_WRITE_FLAGS, (flags & (O_ACCMODE | O_NONBLOCK)) == O_WRONLY,
		  "fifo b write end flags %#x", flags);
	return zoo_done();
}
