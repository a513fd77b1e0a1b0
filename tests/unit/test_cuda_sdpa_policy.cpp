// The CUDA backend's attention-path decisions (cuda/sdpa_policy.h), on the host, without
// a GPU or cuDNN (issue 16): a cuDNN that cannot start is a refusal said once and the own
// kernels run for every shape; the deterministic backward is asked for first; where it is
// refused, CURACLIP_CUDA_DETERMINISTIC=1 takes the own kernel instead of cuDNN's
// non-deterministic variant; refusals are said once per shape, the non-deterministic
// fallback once per backend.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "cuda/sdpa_policy.h"

namespace curaclip::cuda {
namespace {

struct Said {
    std::vector<std::string> lines;
    auto sink() {
        return [this](const std::string& s) { lines.push_back(s); };
    }
};

TEST(CudaSdpaPolicy, OptionsFromTheEnvironmentValues) {
    EXPECT_TRUE(sdpa_options_from(nullptr, nullptr).enabled);
    EXPECT_FALSE(sdpa_options_from(nullptr, nullptr).deterministic_only);
    EXPECT_FALSE(sdpa_options_from("1", nullptr).enabled);
    EXPECT_TRUE(sdpa_options_from("0", nullptr).enabled);
    EXPECT_TRUE(sdpa_options_from("", nullptr).enabled);
    EXPECT_TRUE(sdpa_options_from("10", nullptr).enabled);
    EXPECT_TRUE(sdpa_options_from(nullptr, "1").deterministic_only);
    EXPECT_FALSE(sdpa_options_from(nullptr, "yes").deterministic_only);
}

TEST(CudaSdpaPolicy, ACudnnThatCannotStartIsARefusalSaidOnce) {
    Said said;
    SdpaPolicy p({}, said.sink());
    int starts = 0;
    auto failing = [&] {
        ++starts;
        return std::string("cudnnCreate: CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED");
    };
    for (int call = 0; call < 5; ++call) EXPECT_FALSE(p.started(failing));
    EXPECT_EQ(starts, 1);
    EXPECT_TRUE(p.start_failed());
    ASSERT_EQ(said.lines.size(), 1u);
    EXPECT_EQ(said.lines[0],
              "curaclip cuda: cuDNN cannot start (cudnnCreate: CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED); the own "
              "attention kernels run for every shape");
    EXPECT_EQ(p.unavailable_note(),
              "cuDNN cannot start (cudnnCreate: CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED): own attention kernels");
}

TEST(CudaSdpaPolicy, StartsOnceAndNeverWhenSwitchedOff) {
    Said said;
    SdpaPolicy on({}, said.sink());
    int starts = 0;
    auto ok = [&] {
        ++starts;
        return std::string();
    };
    EXPECT_TRUE(on.started(ok));
    EXPECT_TRUE(on.started(ok));
    EXPECT_EQ(starts, 1);
    EXPECT_EQ(on.unavailable_note(), "");
    SdpaPolicy off(sdpa_options_from("1", nullptr), said.sink());
    EXPECT_FALSE(off.started(ok));
    EXPECT_EQ(starts, 1);  // never asked
    EXPECT_TRUE(said.lines.empty());
    EXPECT_EQ(off.unavailable_note(), "cuDNN SDPA off (CURACLIP_CUDA_NO_CUDNN_SDPA=1): own attention kernels");
}

TEST(CudaSdpaPolicy, ForwardRefusalRunsTheOwnKernel) {
    Said said;
    SdpaPolicy p({}, said.sink());
    EXPECT_EQ(p.forward("forward T=50", [](std::string&) { return true; }), SdpaPath::cudnn);
    EXPECT_EQ(p.forward("forward T=17", [](std::string& why) {
        why = "no engine";
        return false;
    }),
              SdpaPath::own_kernel);
    ASSERT_EQ(said.lines.size(), 1u);
    EXPECT_EQ(said.lines[0],
              "curaclip cuda: cuDNN SDPA forward T=17 refused (no engine); the own attention kernel runs for it");
}

// A backward builder that accepts the deterministic graph or not, and the other one or not.
struct Builder {
    bool det_ok, nondet_ok;
    std::vector<bool> asked;
    bool operator()(bool deterministic, std::string& why) {
        asked.push_back(deterministic);
        const bool ok = deterministic ? det_ok : nondet_ok;
        if (!ok) why = deterministic ? "deterministic: no engine" : "default: no engine";
        return ok;
    }
};

TEST(CudaSdpaPolicy, BackwardAsksForTheDeterministicAlgorithmFirst) {
    Said said;
    SdpaPolicy p({}, said.sink());
    Builder b{true, true, {}};
    EXPECT_EQ(p.backward("backward T=50", std::ref(b)), SdpaPath::cudnn);
    EXPECT_EQ(b.asked, std::vector<bool>({true}));
    EXPECT_TRUE(said.lines.empty());
}

TEST(CudaSdpaPolicy, RefusedDeterministicBackwardFallsBackToTheDefaultOnceSaid) {
    Said said;
    SdpaPolicy p({}, said.sink());
    Builder b{false, true, {}};
    EXPECT_EQ(p.backward("backward T=16", std::ref(b)), SdpaPath::cudnn_nondeterministic);
    EXPECT_EQ(p.backward("backward T=17", std::ref(b)), SdpaPath::cudnn_nondeterministic);
    EXPECT_EQ(b.asked, std::vector<bool>({true, false, true, false}));
    ASSERT_EQ(said.lines.size(), 1u);  // once per backend
    EXPECT_NE(said.lines[0].find("backward T=16: deterministic: no engine"), std::string::npos) << said.lines[0];
    EXPECT_NE(said.lines[0].find("CURACLIP_CUDA_DETERMINISTIC=1"), std::string::npos) << said.lines[0];
}

TEST(CudaSdpaPolicy, DeterministicOnlyRunsTheOwnKernelInsteadOfAtomics) {
    Said said;
    SdpaPolicy p(sdpa_options_from(nullptr, "1"), said.sink());
    Builder b{false, true, {}};
    EXPECT_EQ(p.backward("backward T=16", std::ref(b)), SdpaPath::own_kernel);
    EXPECT_EQ(b.asked, std::vector<bool>({true}));  // the non-deterministic graph is never built
    ASSERT_EQ(said.lines.size(), 1u);
    EXPECT_EQ(said.lines[0],
              "curaclip cuda: cuDNN SDPA backward T=16: deterministic backward refused (deterministic: no engine); "
              "CURACLIP_CUDA_DETERMINISTIC=1: the own attention kernel runs for it");
    Builder ok{true, true, {}};
    EXPECT_EQ(p.backward("backward T=50", std::ref(ok)), SdpaPath::cudnn);  // deterministic cuDNN is fine
}

TEST(CudaSdpaPolicy, BackwardRefusedBothWaysRunsTheOwnKernel) {
    Said said;
    SdpaPolicy p({}, said.sink());
    Builder b{false, false, {}};
    EXPECT_EQ(p.backward("backward T=9", std::ref(b)), SdpaPath::own_kernel);
    ASSERT_EQ(said.lines.size(), 1u);
    EXPECT_EQ(said.lines[0],
              "curaclip cuda: cuDNN SDPA backward T=9 refused (deterministic: no engine; non-deterministic variant: "
              "default: no engine); the own attention kernel runs for it");
    EXPECT_STREQ(sdpa_path_name(SdpaPath::cudnn_nondeterministic), "cuDNN (non-deterministic)");
}

}  // namespace
}  // namespace curaclip::cuda
