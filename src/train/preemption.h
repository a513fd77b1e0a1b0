// Preemption: SIGTERM and SIGUSR1 (what Slurm sends before it kills or requeues
// a job) set a flag; the trainer asks every rank at each step (one all-reduce of
// one number) so all ranks stop at the same step, checkpoint and exit.
#pragma once

namespace curaclip {

void install_preemption_handlers();
bool preemption_requested();   // this process received a signal
void clear_preemption_request();  // for tests

}  // namespace curaclip
