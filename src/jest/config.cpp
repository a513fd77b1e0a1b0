#include "jest/config.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <numeric>
#include <sstream>

#include "core/check.h"

namespace curaclip::jest {

namespace {
std::string lower(const std::string& s) {
    std::string k = s;
    std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    std::replace(k.begin(), k.end(), '-', '_');
    return k;
}
}  // namespace

ScoreKind parse_score_kind(const std::string& s) {
    const std::string k = lower(s);
    if (k == "learnability") return ScoreKind::learnability;
    if (k == "hard_learner" || k == "hard") return ScoreKind::hard_learner;
    if (k == "easy_reference" || k == "easy") return ScoreKind::easy_reference;
    CC_USER_FAIL("jest.score: unknown JEST score '", s, "': choose learnability, hard_learner or easy_reference");
}

SelectMode parse_select_mode(const std::string& s) {
    const std::string k = lower(s);
    if (k == "gathered") return SelectMode::gathered;
    if (k == "sharded") return SelectMode::sharded;
    CC_USER_FAIL("jest.mode: unknown JEST mode '", s, "': choose gathered (every rank holds the B x B matrix) or "
            "sharded (row blocks stay on their ranks)");
}

SelectMethod parse_select_method(const std::string& s) {
    const std::string k = lower(s);
    if (k == "joint") return SelectMethod::joint;
    if (k == "independent_topk" || k == "topk") return SelectMethod::independent_topk;
    if (k == "independent_sampled" || k == "independent") return SelectMethod::independent_sampled;
    if (k == "uniform") return SelectMethod::uniform;
    CC_USER_FAIL("jest.method: unknown JEST method '", s, "': choose joint, independent_topk, independent_sampled or uniform");
}

const char* score_kind_name(ScoreKind k) {
    switch (k) {
        case ScoreKind::learnability: return "learnability";
        case ScoreKind::hard_learner: return "hard_learner";
        case ScoreKind::easy_reference: return "easy_reference";
    }
    return "?";
}
const char* select_mode_name(SelectMode m) {
    return m == SelectMode::gathered ? "gathered" : "sharded";
}
const char* select_method_name(SelectMethod m) {
    switch (m) {
        case SelectMethod::joint: return "joint";
        case SelectMethod::independent_topk: return "independent_topk";
        case SelectMethod::independent_sampled: return "independent_sampled";
        case SelectMethod::uniform: return "uniform";
    }
    return "?";
}

int64_t JestConfig::selected_batch(int64_t B) const {
    if (batch > 0) return batch;
    return int64_t(std::llround((1.0 - filter_ratio) * double(B)));
}

int64_t super_batch_for(int64_t b, double f) {
    CC_REQUIRE(b >= 1, "JEST: train.batch_size (the selected batch b) must be >= 1, got ", b);
    CC_REQUIRE(std::isfinite(f) && f > 0.0 && f < 1.0, "jest.filter_ratio must be in (0, 1), got ", f,
               " (f = 1 - b/B is the share of the super-batch that is dropped)");
    const double B = double(b) / (1.0 - f);
    CC_REQUIRE(B < 4e18, "JEST: super-batch b / (1 - f) = ", b, " / ", 1.0 - f, " is too large");
    return std::llround(B);
}

void JestConfig::validate(int64_t B, int P) const {
    CC_CHECK(P >= 1, "JEST: number of ranks must be >= 1, got ", P);
    CC_REQUIRE(B >= 1, "JEST: super-batch size must be >= 1, got ", B);
    CC_REQUIRE(chunks >= 1, "jest.chunks (N) must be >= 1, got ", chunks);
    CC_REQUIRE(std::isfinite(temperature) && temperature > 0.0,
               "jest.temperature must be a positive finite number, got ", temperature);
    if (batch == 0)
        CC_REQUIRE(std::isfinite(filter_ratio) && filter_ratio >= 0.0 && filter_ratio < 1.0,
                   "jest.filter_ratio: filter ratio f must be in [0, 1), got ", filter_ratio,
                   " (f = 1 - b/B is the share of the super-batch that is dropped)");
    CC_REQUIRE(batch >= 0, "JEST: selected batch b must be >= 1 (or 0 to derive it from f), got ", batch);
    // Each rank scores B/P examples. B is never rounded to a multiple of P: a super-batch
    // that depended on the rank count would select from other candidates (and train on
    // other examples) on 1 and 2 ranks. Refused like an indivisible train.batch_size.
    if (B % P != 0) {
        const int64_t lo = B / P * P, hi = lo + P;
        std::string hint;
        if (batch > 0) {
            if (lo > batch) hint += "; jest.filter_ratio " + std::to_string(1.0 - double(batch) / double(lo)) +
                                    " gives B = " + std::to_string(lo);
            hint += (hint.empty() ? "; " : ", ") + std::string("jest.filter_ratio ") +
                    std::to_string(1.0 - double(batch) / double(hi)) + " gives B = " + std::to_string(hi);
        }
        CC_USER_FAIL("JEST: super-batch B = ", B,
                     batch > 0 ? " (train.batch_size / (1 - jest.filter_ratio), rounded)" : "",
                     " is not divisible by the ", P, " ranks (each rank scores B/P examples): like train.batch_size, "
                     "B must be divisible by the number of ranks; it is never rounded to a multiple of them, which "
                     "would select from other candidates on another rank count", hint);
    }
    const int64_t b = selected_batch(B);
    CC_REQUIRE(b >= 1 && b <= B, "JEST: selected batch b = ", b, " must be in [1, B = ", B, "]");
    const int64_t unit = std::lcm(int64_t(chunks), int64_t(P));
    if (b % unit != 0) {
        const int64_t lo = b / unit * unit, hi = lo + unit;
        CC_USER_FAIL("JEST: selected batch b = ", b, (batch == 0 ? " (from f)" : " (train.batch_size)"),
                     " must be divisible by the chunks N = ", chunks, " and the ranks P = ", P, " (jest.chunks, ranks)",
                     "; nearest valid b: ", (lo >= 1 ? std::to_string(lo) + " or " : std::string()),
                     hi <= B ? std::to_string(hi) : std::string("none above"));
    }
}

std::string JestConfig::str() const {
    std::ostringstream os;
    os << "method=" << select_method_name(method) << " score=" << score_kind_name(score)
       << " mode=" << select_mode_name(mode) << " loss=" << loss_kind_name(loss) << " ";
    if (batch > 0) os << "b=" << batch;
    else os << "f=" << filter_ratio;
    os << " chunks=" << chunks << " tau=" << temperature << " seed=" << seed;
    return os.str();
}

}  // namespace curaclip::jest
