/* Regular files: a read-write fd at an offset, a dup of it (shared offset), an O_APPEND fd,
 * a read-only O_CLOEXEC fd at a high number, and stdin on /dev/null. */
#include "zoo.h"
#include <sys/sysmacros.h>

#define HIGH_FD 150

enum {
	RW_OFFSET = 1,
	HIGH_OFFSET,
	APP_OFFSET,
	DUP_SHARED, /* the dup shares the open file description (and its offset) */
	RW_CONTENT,
	RW_FLAGS,
	RW_NO_CLOEXEC,
	APP_FLAGS,
	HIGH_FLAGS,
	HIGH_CLOEXEC,
	APPEND_LOG, /* a write after seeking back still appends: the log is first, second */
	STDIN_NULL,
	ITEMS = STDIN_NULL
};

static char content[20000];

static off_t pos(int fd) { return lseek(fd, 0, SEEK_CUR); }

int main(int argc, char **argv)
{
	char *data, *log, buf[64];
	int rw, dup_rw, app, ro, fl, f;
	struct stat st;

	zoo_init(argc, argv, ITEMS);
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
	if (ZOO_BREAK(RW_OFFSET))
		lseek(rw, 1, SEEK_CUR);
	if (ZOO_BREAK(HIGH_OFFSET))
		lseek(HIGH_FD, 1, SEEK_CUR);
	if (ZOO_BREAK(APP_OFFSET))
		lseek(app, 1, SEEK_CUR);
	if (ZOO_BREAK(DUP_SHARED)) {
		/* The same file, flags and offset, but a description of its own. */
		f = open(data, O_RDWR);
		if (f < 0 || lseek(f, 12345, SEEK_SET) != 12345 || dup2(f, dup_rw) != dup_rw)
			zoo_die("reopen data.bin");
		close(f);
	}
	if (ZOO_BREAK(RW_CONTENT) && pwrite(rw, "x", 1, 105) != 1)
		zoo_die("pwrite");
	if (ZOO_BREAK(RW_FLAGS))
		fcntl(rw, F_SETFL, O_APPEND);
	if (ZOO_BREAK(RW_NO_CLOEXEC))
		fcntl(rw, F_SETFD, FD_CLOEXEC);
	if (ZOO_BREAK(APP_FLAGS))
		fcntl(app, F_SETFL, O_APPEND | O_NONBLOCK);
	if (ZOO_BREAK(HIGH_FLAGS))
		fcntl(HIGH_FD, F_SETFL, O_NONBLOCK);
	if (ZOO_BREAK(HIGH_CLOEXEC))
		fcntl(HIGH_FD, F_SETFD, 0);
	if (ZOO_BREAK(APPEND_LOG)) {
		f = open(log, O_WRONLY | O_APPEND);
		if (f < 0 || write(f, "x", 1) != 1)
			zoo_die("append to append.log");
		close(f);
	}
	if (ZOO_BREAK(STDIN_NULL)) {
		f = open("/dev/zero", O_RDONLY);
		if (f < 0 || dup2(f, 0) != 0)
			zoo_die("/dev/zero");
		close(f);
	}
	zoo_wait();

	ZOO_CHECK(RW_OFFSET, pos(rw) == 12345, "rw offset %lld, want 12345", (long long)pos(rw));
	ZOO_CHECK(HIGH_OFFSET, pos(HIGH_FD) == 777, "fd %d offset %lld, want 777", HIGH_FD,
		  (long long)pos(HIGH_FD));
	ZOO_CHECK(APP_OFFSET, pos(app) == 6, "append fd offset %lld, want 6", (long long)pos(app));
	/* The dup shares the open file description: moving one moves the other. */
	lseek(dup_rw, 100, SEEK_SET);
	ZOO_CHECK(DUP_SHARED, pos(rw) == 100, "dup no longer shares the offset (rw at %lld)",
		  (long long)pos(rw));
	ZOO_CHECK(RW_CONTENT, pread(rw, buf, 16, 100) == 16 && memcmp(buf, content + 100, 16) == 0,
		  "content at 100 differs");

	fl = fcntl(rw, F_GETFL);
	ZOO_CHECK(RW_FLAGS, (fl & (O_ACCMODE | O_APPEND)) == O_RDWR, "rw flags %#x", fl);
	ZOO_CHECK(RW_NO_CLOEXEC, fcntl(rw, F_GETFD) == 0, "rw fd got FD_CLOEXEC");
	fl = fcntl(app, F_GETFL);
	ZOO_CHECK(APP_FLAGS, (fl & (O_ACCMODE | O_APPEND | O_NONBLOCK)) == (O_WRONLY | O_APPEND),
		  "append fd flags %#x", fl);
	fl = fcntl(HIGH_FD, F_GETFL);
	ZOO_CHECK(HIGH_FLAGS, fl >= 0 && (fl & (O_ACCMODE | O_NONBLOCK)) == O_RDONLY,
		  "fd %d flags %#x", HIGH_FD, fl);
	ZOO_CHECK(HIGH_CLOEXEC, fcntl(HIGH_FD, F_GETFD) == FD_CLOEXEC, "fd %d lost FD_CLOEXEC",
		  HIGH_FD);

	/* O_APPEND still appends even after seeking back. */
	lseek(app, 0, SEEK_SET);
	if (write(app, "second\n", 7) != 7)
		zoo_fail(0, "append write: %s", strerror(errno));
	ZOO_CHECK(APPEND_LOG,
		  fstat(app, &st) == 0 && st.st_size == 13 &&
			  zoo_read_file(log, buf, sizeof(buf)) == 13 &&
			  strcmp(buf, "first\nsecond\n") == 0,
		  "append.log is %lld bytes, want 13 (first, second)", (long long)st.st_size);

	ZOO_CHECK(STDIN_NULL,
		  fstat(0, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 &&
			  minor(st.st_rdev) == 3,
		  "stdin is no longer /dev/null");
	return zoo_done();
}
