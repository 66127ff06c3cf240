#ifndef FEDSEG_PROCESS_SPAWN_H
#define FEDSEG_PROCESS_SPAWN_H

#include <sys/types.h>

/// Starts `argv[0]` (a path) with `argv`, standard input from /dev/null, standard output and
/// error to `output_path`, and every other descriptor closed in the child (glibc's
/// posix_spawn_file_actions_addclosefrom_np, which Swift's Glibc module does not expose).
/// Returns 0 and sets `*pid`, or an errno value.
int fedseg_spawn_closing_descriptors(const char *const argv[], const char *output_path, pid_t *pid);

#endif
