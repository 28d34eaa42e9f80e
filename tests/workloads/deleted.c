/* An open file whose path was unlinked (a ghost file), at an offset, with contents that
 * must survive; a deleted file whose name was then reused by another file; and an
 * O_TMPFILE file (never linked). */
#include "zoo.h"

enum {
	GHOST_UNLINKED = 1,
	GHOST_SIZE,
	GHOST_MODE,
	GHOST_OFFSET,
	GHOST_CONTENTS,
	GHOST_PATH_GONE, /* nothing came back at the ghost's path */
	OLD_CONTENTS,    /* the deleted reused.txt, through its fd */
	OLD_UNLINKED,
	NEW_CONTENTS, /* the file now at reused.txt */
	TMP_OFFSET,
	TMP_CONTENTS,
	TMP_RDWR,
	ITEMS = TMP_RDWR
};

static char content[100000];

/* Puts at `fd` a linked file with `len` bytes of `data`, mode 0600, at offset `off`:
 * the same as the unlinked file there, but for its link. */
static void linked_copy(int fd, const char *name, const void *data, size_t len, off_t off)
{
	int f = open(zoo_path(name), O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (f < 0 || write(f, data, len) != (ssize_t)len || lseek(f, off, SEEK_SET) != off ||
	    dup2(f, fd) != fd)
		zoo_die(name);
	close(f);
}

int main(int argc, char **argv)
{
	char *p, *q, buf[64], proc[64];
	static char back[sizeof(content)];
	struct stat st;
	int fd, fd2, other, tmp, f;
	ssize_t n;

	zoo_init(argc, argv, ITEMS);
	p = zoo_path("ghost.bin");
	q = zoo_path("reused.txt");
	zoo_fill(content, sizeof(content), 1234);
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, content, sizeof(content)) != sizeof(content))
		zoo_die("ghost.bin");
	if (unlink(p))
		zoo_die("unlink");
	lseek(fd, 4242, SEEK_SET);
	fd2 = open(q, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd2 < 0 || write(fd2, "old contents", 12) != 12 || unlink(q))
		zoo_die("reused.txt");
	other = open(q, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (other < 0 || write(other, "new file", 8) != 8)
		zoo_die("reused.txt again");
	close(other);
	tmp = open(zoo_tmp, O_RDWR | O_TMPFILE, 0640);
	if (tmp < 0 || write(tmp, "tmpfile data", 12) != 12)
		zoo_die("O_TMPFILE");

	zoo_ready();
	if (ZOO_BREAK(GHOST_UNLINKED))
		linked_copy(fd, "ghost-copy.bin", content, sizeof(content), 4242);
	if (ZOO_BREAK(GHOST_SIZE) && ftruncate(fd, sizeof(content) + 1))
		zoo_die("ftruncate");
	if (ZOO_BREAK(GHOST_MODE))
		fchmod(fd, 0640);
	if (ZOO_BREAK(GHOST_OFFSET))
		lseek(fd, 4243, SEEK_SET);
	if (ZOO_BREAK(GHOST_CONTENTS) && pwrite(fd, "x", 1, 99999) != 1)
		zoo_die("pwrite");
	if (ZOO_BREAK(GHOST_PATH_GONE)) {
		f = open(p, O_RDWR | O_CREAT, 0600);
		close(f);
	}
	if (ZOO_BREAK(OLD_CONTENTS) && pwrite(fd2, "O", 1, 0) != 1)
		zoo_die("pwrite");
	if (ZOO_BREAK(OLD_UNLINKED))
		linked_copy(fd2, "old-copy.txt", "old contents", 12, 12);
	if (ZOO_BREAK(NEW_CONTENTS)) {
		f = open(q, O_WRONLY);
		if (f < 0 || write(f, "NEW", 3) != 3)
			zoo_die("reused.txt");
		close(f);
	}
	if (ZOO_BREAK(TMP_OFFSET))
		lseek(tmp, 11, SEEK_SET);
	if (ZOO_BREAK(TMP_CONTENTS) && pwrite(tmp, "T", 1, 0) != 1)
		zoo_die("pwrite");
	if (ZOO_BREAK(TMP_RDWR)) {
		/* The same unlinked file, opened read-only, at the same offset. */
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", tmp);
		f = open(proc, O_RDONLY);
		if (f < 0 || lseek(f, 12, SEEK_SET) != 12 || dup2(f, tmp) != tmp)
			zoo_die("reopen the tmpfile");
		close(f);
	}
	zoo_wait();

	ZOO_CHECK(GHOST_UNLINKED, fstat(fd, &st) == 0 && st.st_nlink == 0, "ghost has %lu links",
		  (unsigned long)st.st_nlink);
	ZOO_CHECK(GHOST_SIZE, st.st_size == sizeof(content), "ghost size %lld",
		  (long long)st.st_size);
	ZOO_CHECK(GHOST_MODE, (st.st_mode & 07777) == 0600, "ghost mode %o", st.st_mode & 07777);
	ZOO_CHECK(GHOST_OFFSET, lseek(fd, 0, SEEK_CUR) == 4242, "ghost offset %lld",
		  (long long)lseek(fd, 0, SEEK_CUR));
	n = pread(fd, back, sizeof(back), 0);
	ZOO_CHECK(GHOST_CONTENTS, n == sizeof(back) && memcmp(back, content, sizeof(back)) == 0,
		  "ghost contents differ (%zd bytes read)", n);
	ZOO_CHECK(GHOST_PATH_GONE, access(p, F_OK) != 0, "ghost path came back");
	n = pread(fd2, buf, sizeof(buf), 0);
	ZOO_CHECK(OLD_CONTENTS, n == 12 && memcmp(buf, "old contents", 12) == 0,
		  "deleted reused.txt differs");
	ZOO_CHECK(OLD_UNLINKED, fstat(fd2, &st) == 0 && st.st_nlink == 0,
		  "deleted reused.txt has links");
	ZOO_CHECK(NEW_CONTENTS,
		  zoo_read_file(q, buf, sizeof(buf)) == 8 && strcmp(buf, "new file") == 0,
		  "the new reused.txt differs: %s", buf);
	ZOO_CHECK(TMP_OFFSET, lseek(tmp, 0, SEEK_CUR) == 12, "tmpfile offset %lld",
		  (long long)lseek(tmp, 0, SEEK_CUR));
	n = pread(tmp, buf, sizeof(buf), 0);
	ZOO_CHECK(TMP_CONTENTS, n == 12 && memcmp(buf, "tmpfile data", 12) == 0,
		  "tmpfile contents differ");
	ZOO_CHECK(TMP_RDWR, (fcntl(tmp, F_GETFL) & O_ACCMODE) == O_RDWR, "tmpfile not read-write");
	return zoo_done();
}
