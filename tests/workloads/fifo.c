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
	char *a, *b;
	int ar, aw, brw, bw, br, flags, status;
	pid_t kid;
	struct stat st, fst;
	size_t got;
	ssize_t n;

	zoo_init(argc, argv);
	a = zoo_path("fifo-a");
	b = zoo_path("fifo-b");
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
		_exit(write(aw, "kid!", 4) == 4 ? 0 : 1);
	}

	zoo_ready();
	if (zoo_corrupt && read(ar, back, 1) != 1)
		zoo_die("corrupt");
	zoo_wait();
	kill(kid, SIGTERM);
	ZOO_CHECK(waitpid(kid, &status, 0) == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "child writing through its inherited end of fifo a failed (%#x)", status);

	got = read_all(ar, back, sizeof(back));
	ZOO_CHECK(got == A_BYTES + 4 && memcmp(back, a_data, A_BYTES) == 0 &&
			  memcmp(back + A_BYTES, "kid!", 4) == 0,
		  "fifo a: got %zu bytes, want %d intact then \"kid!\"", got, A_BYTES);
	n = read(ar, back, 1);
	ZOO_CHECK(n == -1 && errno == EAGAIN, "drained fifo a read gave %zd", n);
	ZOO_CHECK(fcntl(aw, F_GETPIPE_SZ) == 131072, "fifo a size %d", fcntl(aw, F_GETPIPE_SZ));
	flags = fcntl(ar, F_GETFL);
	ZOO_CHECK((flags & O_ACCMODE) == O_RDONLY && (flags & O_NONBLOCK),
		  "fifo a read end flags %#x", flags);
	flags = fcntl(aw, F_GETFL);
	ZOO_CHECK((flags & O_ACCMODE) == O_WRONLY && !(flags & O_NONBLOCK),
		  "fifo a write end flags %#x", flags);
	ZOO_CHECK(stat(a, &st) == 0 && fstat(ar, &fst) == 0 && S_ISFIFO(fst.st_mode) &&
			  st.st_ino == fst.st_ino,
		  "fifo a read end is not the fifo at its path");
	ZOO_CHECK(write(aw, "ping", 4) == 4 && read(ar, back, 8) == 4 &&
			  memcmp(back, "ping", 4) == 0,
		  "fifo a does not carry data after restore");

	br = open(b, O_RDONLY | O_NONBLOCK);
	if (br < 0)
		zoo_die("open fifo b for reading");
	got = read_all(br, back, sizeof(back));
	ZOO_CHECK(got == B_BYTES && memcmp(back, b_data, B_BYTES) == 0,
		  "fifo b: got %zu bytes, want %d intact", got, B_BYTES);
	flags = fcntl(bw, F_GETFL);
	ZOO_CHECK((flags & O_ACCMODE) == O_WRONLY, "fifo b write end flags %#x", flags);
	return zoo_done();
}
