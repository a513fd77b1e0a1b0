// main() of the MPI test binary (ctest runs it under mpiexec with 1, 2 and 4 ranks).
//
// Every rank runs every test. Rank 0 prints gtest's usual output; the other
// ranks print only their failures, prefixed with the rank. The exit code is
// agreed across ranks (the worst one), so a failure on any rank fails the run.
//
// Exceptions are not caught per test (catch_exceptions off): a rank that throws
// inside a test would otherwise go on to the next test while the other ranks
// wait in a collective, i.e. hang. Instead the exception reaches main(), which
// aborts the whole job with the message.
#include <gtest/gtest.h>

#include <cstdio>
#include <exception>
#include <string>

#include "mpi/communicator.h"

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
public:
    explicit RankFailurePrinter(int rank) : rank_(rank) {}
    // The test's name is kept from OnTestStart: calling UnitTest::current_test_info()
    // inside OnTestPartResult would deadlock on gtest's own mutex.
    void OnTestStart(const ::testing::TestInfo& t) override {
        test_ = std::string(t.test_suite_name()) + "." + t.name();
    }
    void OnTestPartResult(const ::testing::TestPartResult& r) override {
        if (!r.failed()) return;
        std::fprintf(stderr, "[rank %d] FAILED %s at %s:%d\n%s\n", rank_, test_.c_str(),
                     r.file_name() ? r.file_name() : "?", r.line_number(), r.message());
        std::fflush(stderr);
    }

private:
    int rank_;
    std::string test_;
};

}  // namespace

int main(int argc, char** argv) {
    curaclip::MpiEnvironment env(&argc, &argv);
    const curaclip::Communicator world = curaclip::Communicator::world();
    ::testing::InitGoogleTest(&argc, argv);
    GTEST_FLAG_SET(catch_exceptions, false);

    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    if (world.rank() != 0) {
        delete listeners.Release(listeners.default_result_printer());
        listeners.Append(new RankFailurePrinter(world.rank()));
    }

    int32_t rc = 1;
    try {
        rc = RUN_ALL_TESTS();
        world.allreduce_max(&rc, 1);
    } catch (const std::exception& e) {
        world.abort(3, std::string("uncaught exception in a test: ") + e.what());
    }
    if (world.rank() == 0)
        std::printf("[mpi] %d rank(s): %s\n", world.size(), rc == 0 ? "all passed" : "FAILED");
    return rc;
}
