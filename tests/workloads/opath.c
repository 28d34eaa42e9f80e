/* O_PATH fds: one on a directory (O_PATH | O_DIRECTORY), one on a regular file in it, one
 * on a FIFO and one on a symlink itself (O_PATH | O_NOFOLLOW). After the restore all still
 * carry O_PATH, fstat gives each one's type (and the file's size), openat relative to the
 * directory fd opens the file, the file reopened through /proc/self/fd reads its contents,
 * readlinkat on the symlink fd gives its target, and read(2) on the O_PATH fd itself is
 * refused (EBADF). */
#include "zoo.h"

static const char text[] = "reached through an O_PATH fd";

int main(int argc, char **argv)
{
	char buf[64], link[64];
	struct stat st;
	char *dir, *file, *fifo, *sym;
	int dfd, ffd, pfd, sfd, f, flags;
	ssize_t n;

	zoo_init(argc, argv);
	dir = zoo_path("odir");
	file = zoo_path("odir/file");
	if (mkdir(dir, 0700))
		zoo_die("mkdir");
	f = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (f < 0 || write(f, text, sizeof(text)) != sizeof(text))
		zoo_die("create the file");
	close(f);
	fifo = zoo_path("odir/fifo");
	sym = zoo_path("odir/link");
	if (mkfifo(fifo, 0600) || symlink("file", sym))
		zoo_die("mkfifo/symlink");
	dfd = open(dir, O_PATH | O_DIRECTORY);
	ffd = open(file, O_PATH | O_CLOEXEC);
	pfd = open(fifo, O_PATH);
	sfd = open(sym, O_PATH | O_NOFOLLOW);
	if (dfd < 0 || ffd < 0 || pfd < 0 || sfd < 0)
		zoo_die("open O_PATH");

	zoo_ready();
	if (zoo_corrupt) {
		/* the same directory, but an ordinary descriptor */
		f = open(dir, O_RDONLY | O_DIRECTORY);
		if (f < 0 || dup2(f, dfd) < 0)
			zoo_die("corrupt");
		close(f);
	}
	zoo_wait();

	flags = fcntl(dfd, F_GETFL);
	ZOO_CHECK(flags >= 0 && (flags & O_PATH), "directory fd lost O_PATH (%#x)", flags);
	flags = fcntl(ffd, F_GETFL);
	ZOO_CHECK(flags >= 0 && (flags & O_PATH), "file fd lost O_PATH (%#x)", flags);
	flags = fcntl(ffd, F_GETFD);
	ZOO_CHECK(flags == FD_CLOEXEC, "file fd FD_CLOEXEC %d", flags);
	ZOO_CHECK(fstat(ffd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == sizeof(text),
		  "fstat of the O_PATH file fd");
	ZOO_CHECK(fstat(dfd, &st) == 0 && S_ISDIR(st.st_mode), "fstat of the O_PATH dir fd");
	f = openat(dfd, "file", O_RDONLY | O_CLOEXEC);
	n = f >= 0 ? read(f, buf, sizeof(buf)) : -1;
	ZOO_CHECK(n == sizeof(text) && memcmp(buf, text, sizeof(text)) == 0,
		  "openat relative to the directory fd: %zd", n);
	if (f >= 0)
		close(f);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", ffd);
	f = open(link, O_RDONLY | O_CLOEXEC);
	n = f >= 0 ? read(f, buf, sizeof(buf)) : -1;
	ZOO_CHECK(n == sizeof(text) && memcmp(buf, text, sizeof(text)) == 0,
		  "reopening the O_PATH file fd: %zd", n);
	if (f >= 0)
		close(f);
	ZOO_CHECK((fcntl(pfd, F_GETFL) & O_PATH) && fstat(pfd, &st) == 0 && S_ISFIFO(st.st_mode),
		  "O_PATH fifo fd");
	ZOO_CHECK((fcntl(sfd, F_GETFL) & O_PATH) && fstat(sfd, &st) == 0 && S_ISLNK(st.st_mode),
		  "O_PATH symlink fd is not the symlink itself");
	n = readlinkat(sfd, "", buf, sizeof(buf));
	ZOO_CHECK(n == 4 && memcmp(buf, "file", 4) == 0, "readlinkat on the symlink fd: %zd", n);
	n = read(ffd, buf, 1);
	ZOO_CHECK(n == -1 && errno == EBADF, "read on the O_PATH fd gave %zd", n);
	return zoo_done();
}
