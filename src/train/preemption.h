// Signals and a training job: an orderly stop on request, and a word on what is
// left of the run when the launcher ends the job because a rank died.
//
// Stop requests. SIGUSR1, SIGUSR2, SIGTERM, SIGINT and SIGHUP set a flag; the
// trainer polls it once per step (preemption_requested()) and the ranks agree on
// it with one all-reduce, so every rank stops after the same step, one checkpoint
// is written, and the process exits with kExitResumable. A signal that arrives
// before the trainer's loop (while MPI starts, while data and models load) is kept
// and honoured after the first step: main() installs the handlers before MPI_Init.
// A second SIGINT (Ctrl-C twice on a run started without a launcher) exits at
// once, without a checkpoint (status 130). SIGHUP and SIGINT that were ignored when
// the process started (`nohup`, a shell's background job) stay ignored.
//
// What Open MPI 4.1 does with signals to `mpirun` (orte/mca/ess/base/ess_base_frame.c,
// orte/mca/odls/base/odls_base_default_fns.c): SIGUSR1, SIGUSR2 (and SIGTSTP, SIGCONT,
// SIGALRM...) are forwarded to every rank; SIGTERM, SIGINT and SIGHUP cannot be
// forwarded: mpirun ends the job, sending each rank SIGCONT, 1 s later SIGTERM, 1 s
// later SIGKILL (odls_base_sigkill_timeout = 1). It does the same to the surviving
// ranks when one rank dies or exits non-zero. The local launchers therefore turn
// SIGTERM/SIGINT/SIGHUP into SIGUSR1 to mpirun (jobs/local/mpirun.sh).
//
// Lost ranks. A SIGCONT or SIGTERM whose sender is the process that started this
// rank (mpirun or slurmstepd: the launcher) means the launcher may be ending the
// job. The handler then checks whether a rank on this node has gone (kill(pid, 0),
// /proc/PID/stat for zombies) or is failing on its own (report_own_failure(), seen
// in memory the node's ranks share). If one is, the lowest training survivor of the
// node writes (write(2) from the handler: async-signal-safe) which rank was lost,
// the run's last checkpoint (read from <train.out>/latest at that moment, so always
// current) and the exact resume command, and every survivor exits with status 1 at
// once instead of waiting in a collective for SIGKILL. With no rank lost (mpirun
// itself was sent SIGTERM, or the lost rank is on another node) the SIGTERM is
// reported the same way and taken as a stop request: the ranks checkpoint if they
// finish the step before the launcher's SIGKILL.
#pragma once

#include <cstdint>
#include <string>

namespace curaclip {

class Communicator;

// Exit statuses of `curaclip train` and `curaclip train-experts` (docs/training.md):
//   0  the run finished (or reached train.stop_at);  1  it failed (the message says why);
//   kExitResumable  stopped by a signal after writing a checkpoint: continue with
//   --train.resume latest. 75 is EX_TEMPFAIL of BSD sysexits.h ("temporary failure;
//   the user is invited to retry"), which schedulers' requeue rules can key on.
inline constexpr int kExitResumable = 75;

// Installs the handlers for the stop signals (and SIGCONT, for lost-rank reports)
// with SA_RESTART. Idempotent: a second call keeps a request already received.
// Each call after prepare_failure_report() also arms the lost-rank report: the
// trainer calls this when its loop starts, so a job that ends during setup (a bad
// option on one rank) is not reported as a lost run.
void install_preemption_handlers();

bool preemption_requested();      // this process received a stop signal
void clear_preemption_request();  // for tests: forget requests, observations and arming
// Whether preemption_requested() has answered true in this process. The trainer
// stops (checkpoint, return 0) after the step at which any rank's answer was true,
// so "any rank observed" means "the run stopped early on a signal".
bool preemption_observed();
int preemption_signal();  // the first stop signal received (0: none)

// "SIGTERM", "SIGUSR1", ... ("signal N" for others).
std::string signal_name(int sig);

// The command that continues this run: the launcher (CURACLIP_RESUME_CMD as the
// local launchers export it; otherwise CURACLIP_LAUNCHER, or "mpirun -n P" / "srun"
// by the launch environment) and argv with "--train.resume latest" in place of any
// --train.resume, prefixed with "cd <cwd> && " so that relative paths hold.
// argv[0] is the binary, argv[1] the command. Shell-quoted where needed.
std::string resume_command(int argc, char** argv, int world_size);

// Prepares (collective over `world`: the node's ranks exchange their process ids)
// the report written when the launcher ends the job during training. `run_dir` is
// train.out ("" when unknown); `experts`: train-experts, whose checkpoints are in
// run_dir/expert_<c>/. Not armed until the next install_preemption_handlers().
void prepare_failure_report(const Communicator& world, int argc, char** argv, const std::string& command,
                            const std::string& run_dir, bool experts);
// The command has returned: signals from the launcher are now the job's ordinary
// end (Open MPI ends the job when the first rank exits 75), not a lost rank.
void disarm_failure_report();
// This rank is failing on its own (its error printed, MPI_Abort next): the node's
// other ranks report it as the lost rank (it lives until the launcher kills it).
void report_own_failure();

// ---- a stalled job ------------------------------------------------------------------
// A rank that stops without dying (SIGSTOP, a hung file system or device, a node
// that swaps) leaves the others waiting in a collective that never returns: the
// launcher sees no exit, so nothing above fires. The progress watchdog is a thread
// that ends this process (status 1) with the same report as a lost rank (which
// step, the last checkpoint, the resume command) when no progress has been noted
// for `timeout_s` seconds; the launcher then ends the job, the stopped rank too.
// timeout_s <= 0: auto = 1800 s until the first step is done (setup, first
// compilation), then max(300 s, 20 x the slowest step so far). The trainer notes
// progress after each step and pauses the watchdog during checkpoints and
// evaluations, which have no step to note. Safe to call without a report prepared.
void start_progress_watchdog(double timeout_s);
void note_progress(int64_t step, double step_seconds);
void pause_progress_watchdog(bool paused);
void stop_progress_watchdog();

// The watchdog for one scope: started by the constructor, stopped by the destructor
// (also when an Error leaves the training loop).
struct ProgressWatchdog {
    explicit ProgressWatchdog(double timeout_s) { start_progress_watchdog(timeout_s); }
    ~ProgressWatchdog() { stop_progress_watchdog(); }
    ProgressWatchdog(const ProgressWatchdog&) = delete;
    ProgressWatchdog& operator=(const ProgressWatchdog&) = delete;
};
// Paused for one scope (a checkpoint, an evaluation: no step to note).
struct WatchdogPause {
    WatchdogPause() { pause_progress_watchdog(true); }
    ~WatchdogPause() { pause_progress_watchdog(false); }
    WatchdogPause(const WatchdogPause&) = delete;
    WatchdogPause& operator=(const WatchdogPause&) = delete;
};

}  // namespace curaclip
