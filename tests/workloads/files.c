/* Regular files: a read-write fd at an offset, a dup of it (shared offset), an O_APPEND fd,
 * a read-only O_CLOEXEC fd at a high number, and stdin on /dev/null. */
#include "zoo.h"
#include <sys/sysmacros.h>

#define HIGH_FD 150

static char content[20000];

static off_t pos(int fd) { return lseek(fd, 0, SEEK_CUR); }

int main(int argc, char **argv)
{
	char *data, *log, buf[64];
	int rw, dup_rw, app, ro, fl;
	struct stat st;

	zoo_init(argc, argv);
	data = zoo_path("data.bin");
	log = zoo_path("append.log");
	zoo_fill(content, sizeof(content), 7);
	rw = open(data, O_RDWR | O_CREAT | O_TRUNC, 0640);
	if (rw < 0 || write(rw, content, sizeof(content)) != sizeof(content))
		zoo_die("data.bin");
	lseek(rw, 12345, SEEK_SET);
	dup_rw = dup(rw);
	app = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	if (app < 0 || write(app, "first\n", 6) != 6)
		zoo_die("append.log");
	ro = open(data, O_RDONLY | O_CLOEXEC);
	if (ro < 0 || dup3(ro, HIGH_FD, O_CLOEXEC) < 0)
		zoo_die("ro");
	close(ro);
	lseek(HIGH_FD, 777, SEEK_SET);

	zoo_ready();
	if (zoo_corrupt)
		lseek(HIGH_FD, 1, SEEK_CUR);
	zoo_wait();

	ZOO_CHECK(pos(rw) == 12345, "rw offset %lld, want 12345", (long long)pos(rw));
	ZOO_CHECK(pos(HIGH_FD) == 777, "fd %d offset %lld, want 777", HIGH_FD,
		  (long long)pos(HIGH_FD));
	ZOO_CHECK(pos(app) == 6, "append fd offset %lld, want 6", (long long)pos(app));
	/* The dup shares the open file description: moving one moves the other. */
	lseek(dup_rw, 100, SEEK_SET);
	ZOO_CHECK(pos(rw) == 100, "dup no longer shares the offset (rw at %lld)",
		  (long long)pos(rw));
	ZOO_CHECK(read(rw, buf, 16) == 16 && memcmp(buf, content + 100, 16) == 0,
		  "content at 100 differs");

	fl = fcntl(rw, F_GETFL);
	ZOO_CHECK((fl & O_ACCMODE) == O_RDWR && !(fl & O_APPEND), "rw flags %#x", fl);
	ZOO_CHECK(fcntl(rw, F_GETFD) == 0, "rw fd got FD_CLOEXEC");
	fl = fcntl(app, F_GETFL);
	ZOO_CHECK((fl & O_ACCMODE) == O_WRONLY && (fl & O_APPEND), "append fd flags %#x", fl);
	fl = fcntl(HIGH_FD, F_GETFL);
	ZOO_CHECK(fl >= 0 && (fl & O_ACCMODE) == O_RDONLY, "fd %d flags %#x", HIGH_FD, fl);
	ZOO_CHECK(fcntl(HIGH_FD, F_GETFD) == FD_CLOEXEC, "fd %d lost FD_CLOEXEC", HIGH_FD);

	/* O_APPEND still appends even after seeking back. */
	lseek(app, 0, SEEK_SET);
	ZOO_CHECK(write(app, "second\n", 7) == 7, "append write");
	ZOO_CHECK(fstat(app, &st) == 0 && st.st_size == 13, "append.log size %lld, want 13",
		  (long long)st.st_size);
	ZOO_CHECK(zoo_read_file(log, buf, sizeof(buf)) == 13 && strcmp(buf, "first\nsecond\n") == 0,
		  "append.log content %s", buf);

	ZOO_CHECK(fstat(0, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3,
		  "stdin is no longer /dev/null");
	return zoo_done();
}
