/* An open file whose path was unlinked (a ghost file), at an offset, with contents that
 * must survive; a deleted file whose name was then reused by another file; and an
 * O_TMPFILE file (never linked; its status flags carry O_TMPFILE). */
#include "zoo.h"

static char content[100000];

int main(int argc, char **argv)
{
	char *p, *q, buf[64];
	static char back[sizeof(content)];
	struct stat st;
	int fd, fd2, other, tmp;
	ssize_t n;

	zoo_init(argc, argv);
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
	if (zoo_corrupt)
		pwrite(fd, "x", 1, 99999);
	zoo_wait();

	ZOO_CHECK(fstat(fd, &st) == 0 && st.st_nlink == 0, "ghost has %lu links",
		  (unsigned long)st.st_nlink);
	ZOO_CHECK(st.st_size == sizeof(content), "ghost size %lld", (long long)st.st_size);
	ZOO_CHECK((st.st_mode & 07777) == 0600, "ghost mode %o", st.st_mode & 07777);
	ZOO_CHECK(lseek(fd, 0, SEEK_CUR) == 4242, "ghost offset %lld",
		  (long long)lseek(fd, 0, SEEK_CUR));
	n = pread(fd, back, sizeof(back), 0);
	ZOO_CHECK(n == sizeof(back) && memcmp(back, content, sizeof(back)) == 0,
		  "ghost contents differ (%zd bytes read)", n);
	ZOO_CHECK(access(p, F_OK) != 0, "ghost path came back");
	n = pread(fd2, buf, sizeof(buf), 0);
	ZOO_CHECK(n == 12 && memcmp(buf, "old contents", 12) == 0, "deleted reused.txt differs");
	ZOO_CHECK(fstat(fd2, &st) == 0 && st.st_nlink == 0, "deleted reused.txt has links");
	ZOO_CHECK(zoo_read_file(q, buf, sizeof(buf)) == 8 && strcmp(buf, "new file") == 0,
		  "the new reused.txt differs: %s", buf);
	ZOO_CHECK(lseek(tmp, 0, SEEK_CUR) == 12, "tmpfile offset %lld",
		  (long long)lseek(tmp, 0, SEEK_CUR));
	n = pread(tmp, buf, sizeof(buf), 0);
	ZOO_CHECK(n == 12 && memcmp(buf, "tmpfile data", 12) == 0, "tmpfile contents differ");
	ZOO_CHECK((fcntl(tmp, F_GETFL) & O_ACCMODE) == O_RDWR, "tmpfile not read-write");
	return zoo_done();
}
