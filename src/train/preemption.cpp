#include "train/preemption.h"

#include <csignal>

namespace curaclip {

namespace {
volatile std::sig_atomic_t g_requested = 0;
extern "C" void on_signal(int) { g_requested = 1; }
}  // namespace

void install_preemption_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGUSR1, &sa, nullptr);
}

bool preemption_requested() { return g_requested != 0; }
void clear_preemption_request() { g_requested = 0; }

}  // namespace curaclip
