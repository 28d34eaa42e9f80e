/*
 * A FIFO unlinked while open.
 *
 * P makes FIFO F in its scratch directory, opens it read-write (R) and write-only (W),
 * writes "queued" through W and unlinks F. After SIGTERM it checks that R and W are still
 * one deleted FIFO: the bytes are there to read through R, W is write-only, and a byte
 * written through W comes out of R.
 */
#include "zoo.h"

#include <limits.h>

enum {
	QUEUED = 1, /* the bytes queued at the dump */
	SAME_FIFO,  /* W writes into R's FIFO, which is deleted */
	ITEMS = SAME_FIFO
};

static int deleted(int fd)
{
	char link[64], got[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, got, sizeof(got) - 1);
	if (n < 0)
		return 0;
	got[n] = 0;
	return strstr(got, " (deleted)") != NULL;
}

int main(int argc, char **argv)
{
	char path[PATH_MAX], buf[16];
	struct stat st;
	int r, w, n;

	zoo_init(argc, argv, ITEMS);
	snprintf(path, sizeof(path), "%s/fifo", zoo_tmp);
	if (mkfifo(path, 0640))
		zoo_die("mkfifo");
	r = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	w = open(path, O_WRONLY | O_CLOEXEC);
	if (r < 0 || w < 0)
		zoo_die("open");
	if (write(w, "queued", 6) != 6 || unlink(path))
		zoo_die("write/unlink");

	zoo_ready();
	if (ZOO_BREAK(QUEUED) && read(r, buf, 2) != 2)
		zoo_die("read 2 bytes");
	if (ZOO_BREAK(SAME_FIFO)) {
		/* W becomes another FIFO's. */
		int p[2];

		if (pipe2(p, O_CLOEXEC) || dup3(p[1], w, O_CLOEXEC) != w)
			zoo_die("replace W");
	}
	zoo_wait();

	n = (int)read(r, buf, sizeof(buf));
	ZOO_CHECK(QUEUED, n == 6 && memcmp(buf, "queued", 6) == 0, "read %d bytes back", n);
	ZOO_CHECK(ZOO_UNBREAKABLE /* nothing makes a deleted FIFO visible again */,
		  deleted(r) && fstat(r, &st) == 0 && S_ISFIFO(st.st_mode),
		  "R is not a deleted FIFO");
	ZOO_CHECK(SAME_FIFO, (fcntl(w, F_GETFL) & O_ACCMODE) == O_WRONLY && deleted(w) &&
				     write(w, "x", 1) == 1 && read(r, buf, 1) == 1 && buf[0] == 'x',
		  "W does not write into R's deleted FIFO");
	return zoo_done();
}
