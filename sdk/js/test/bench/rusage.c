/* Runs a command and prints, on stderr after the command's own output, the CPU time (user and
 * system, microseconds, from wait4's rusage) and the wall time of the command alone:
 *   rusage CMD ARGS...   ->   "rusage <user_us> <sys_us> <wall_us>\n"
 * Used by exit-latency.ts: /usr/bin/time rounds CPU time to 10 ms, and Node.js cannot read a
 * child's rusage. Its exit status is the command's. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: rusage CMD [ARGS...]\n");
    return 2;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pid_t pid = fork();
  if (pid < 0) return 2;
  if (pid == 0) {
    execvp(argv[1], argv + 1);
    _exit(127);
  }
  int status = 0;
  struct rusage ru;
  if (wait4(pid, &status, 0, &ru) < 0) return 2;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long long wall = (t1.tv_sec - t0.tv_sec) * 1000000LL + (t1.tv_nsec - t0.tv_nsec) / 1000;
  fprintf(stderr, "\nrusage %lld %lld %lld\n", (long long)ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec,
          (long long)ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec, wall);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
