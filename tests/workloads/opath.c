/* O_PATH fds: one on a directory (O_PATH | O_DIRECTORY), one on a regular file in it, one
 * on a FIFO and one on a symlink itself (O_PATH | O_NOFOLLOW). After the restore all still
 * carry O_PATH, each is the object at its path (fstat: type and inode, the file's size),
 * openat relative to the directory fd opens the file, the file reopened through
 * /proc/self/fd reads its contents, readlinkat on the symlink fd gives its target, and
 * read(2) on the file's O_PATH fd itself is refused (EBADF). */
#include "zoo.h"

enum {
	DIR_OPATH = 1,
	DIR_FD,       /* the directory at its path; openat relative to it opens the file */
	FILE_OPATH,   /* and read(2) on it is refused */
	FILE_CLOEXEC,
	FILE_FD,      /* the file at its path, its size; reopened through /proc it reads */
	FIFO,         /* an O_PATH fd of the fifo at its path */
	SYMLINK,      /* an O_PATH fd of the symlink itself, whose target reads back */
	ITEMS = SYMLINK
};

static const char text[] = "reached through an O_PATH fd";

static int same(int fd, const char *path, struct stat *st)
{
	struct stat at;

	return fstat(fd, st) == 0 && lstat(path, &at) == 0 && st->st_dev == at.st_dev &&
	       st->st_ino == at.st_ino;
}

/* Opens `path` with `flags` at fd `at`. */
static void put_at(const char *path, int flags, int at)
{
	int f = open(path, flags);

	if (f < 0 || dup3(f, at, flags & O_CLOEXEC) != at)
		zoo_die(path);
	close(f);
}

static void make_file(const char *path)
{
	int f = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);

	if (f < 0 || write(f, text, sizeof(text)) != sizeof(text))
		zoo_die(path);
	close(f);
}

/* Reads what `f` holds (it must start with text); closes it. */
static int reads_text(int f)
{
	char buf[64];
	ssize_t n = f >= 0 ? read(f, buf, sizeof(buf)) : -1;

	if (f >= 0)
		close(f);
	return n == sizeof(text) && memcmp(buf, text, sizeof(text)) == 0;
}

int main(int argc, char **argv)
{
	char buf[64], link[64];
	struct stat st;
	char *dir, *dir2, *file, *file2, *fifo, *sym;
	int dfd, ffd, pfd, sfd, flags, ok;
	ssize_t n;

	zoo_init(argc, argv, ITEMS);
	dir = zoo_path("odir");
	dir2 = zoo_path("odir2");
	file = zoo_path("odir/file");
	file2 = zoo_path("odir/file2");
	if (mkdir(dir, 0700) || mkdir(dir2, 0700))
		zoo_die("mkdir");
	make_file(file);
	make_file(file2);
	make_file(zoo_path("odir2/file"));
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
	/* Each break puts another open at the fd: alike but for what the item checks. */
	if (ZOO_BREAK(DIR_OPATH))
		put_at(dir, O_RDONLY | O_DIRECTORY, dfd);
	if (ZOO_BREAK(DIR_FD))
		put_at(dir2, O_PATH | O_DIRECTORY, dfd);
	if (ZOO_BREAK(FILE_OPATH))
		put_at(file, O_RDONLY | O_CLOEXEC, ffd);
	if (ZOO_BREAK(FILE_CLOEXEC))
		fcntl(ffd, F_SETFD, 0);
	if (ZOO_BREAK(FILE_FD))
		put_at(file2, O_PATH | O_CLOEXEC, ffd);
	if (ZOO_BREAK(FIFO))
		put_at(fifo, O_RDWR, pfd);
	if (ZOO_BREAK(SYMLINK))
		put_at(sym, O_PATH, sfd);
	zoo_wait();

	flags = fcntl(dfd, F_GETFL);
	ZOO_CHECK(DIR_OPATH, flags >= 0 && (flags & O_PATH), "directory fd lost O_PATH (%#x)",
		  flags);
	ok = same(dfd, dir, &st) && S_ISDIR(st.st_mode);
	ZOO_CHECK(DIR_FD, ok && reads_text(openat(dfd, "file", O_RDONLY | O_CLOEXEC)),
		  "the directory fd: the directory at its path %d, or openat relative to it fails",
		  ok);
	flags = fcntl(ffd, F_GETFL);
	n = read(ffd, buf, 1);
	ZOO_CHECK(FILE_OPATH, flags >= 0 && (flags & O_PATH) && n == -1 && errno == EBADF,
		  "file fd lost O_PATH (%#x), read on it gave %zd", flags, n);
	flags = fcntl(ffd, F_GETFD);
	ZOO_CHECK(FILE_CLOEXEC, flags == FD_CLOEXEC, "file fd FD_CLOEXEC %d", flags);
	ok = same(ffd, file, &st) && S_ISREG(st.st_mode) && st.st_size == sizeof(text);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", ffd);
	ZOO_CHECK(FILE_FD, ok && reads_text(open(link, O_RDONLY | O_CLOEXEC)),
		  "the file fd: the file at its path %d, or reopening it fails", ok);
	ZOO_CHECK(FIFO, (fcntl(pfd, F_GETFL) & O_PATH) && same(pfd, fifo, &st) && S_ISFIFO(st.st_mode),
		  "O_PATH fifo fd");
	n = readlinkat(sfd, "", buf, sizeof(buf));
	ZOO_CHECK(SYMLINK,
		  (fcntl(sfd, F_GETFL) & O_PATH) && same(sfd, sym, &st) && S_ISLNK(st.st_mode) &&
			  n == 4 && memcmp(buf, "file", 4) == 0,
		  "O_PATH symlink fd is not the symlink itself (readlinkat gave %zd)", n);
	return zoo_done();
}
