#include "mode/routing.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/check.h"

namespace curaclip::mode {

RoutingSchedule parse_routing_schedule(const std::string& s) {
    if (s == "paper") return RoutingSchedule::paper;
    if (s == "metaclip") return RoutingSchedule::metaclip;
    CC_USER_FAIL("--routing: '", s, "' is not one of paper, metaclip");
}

const char* routing_schedule_name(RoutingSchedule s) { return s == RoutingSchedule::paper ? "paper" : "metaclip"; }

namespace {
// Nearest fine center of row x: (squared distance, center).
std::pair<double, int64_t> nearest(const float* x, const RoutingCenters& c) {
    double best = std::numeric_limits<double>::infinity();
    int64_t arg = 0;
    for (int64_t s = 0; s < c.m; ++s) {
        const float* e = c.fine_centers + s * c.dim;
        double d = 0;
        for (int64_t k = 0; k < c.dim; ++k) {
            const double t = double(x[k]) - double(e[k]);
            d += t * t;
        }
        if (d < best) {
            best = d;
            arg = s;
        }
    }
    return {best, arg};
}

void softmax(std::vector<double>& v) {
    const double mx = *std::max_element(v.begin(), v.end());
    double sum = 0;
    for (double& x : v) sum += (x = std::exp(x - mx));
    for (double& x : v) x /= sum;
}
}  // namespace

std::vector<TextRoute> route_texts(const float* task, int64_t K, const RoutingCenters& c) {
    CC_CHECK(c.m > 0 && c.n_experts > 0 && c.fine_centers && c.fine_to_expert, "routing: no fine centers");
    std::vector<TextRoute> out(static_cast<size_t>(K));
    for (int64_t l = 0; l < K; ++l) {
        const auto [d2, s] = nearest(task + l * c.dim, c);
        const int32_t e = c.fine_to_expert[s];
        CC_CHECK(e >= 0 && e < c.n_experts, "routing: fine center ", s, " maps to expert ", e);
        out[size_t(l)] = {s, e, d2};
    }
    return out;
}

std::vector<double> routing_weights(const float* task, int64_t K, const RoutingCenters& c, const RoutingOptions& opt) {
    CC_CHECK(K > 0, "routing: the task has no texts");
    CC_CHECK(c.m > 0 && c.n_experts > 0 && c.fine_centers && c.fine_to_expert, "routing: no fine centers");
    CC_CHECK(opt.lambda > 0 && opt.temperature > 0, "routing: lambda and temperature must be positive (got ", opt.lambda,
             ", ", opt.temperature, ")");
    std::vector<double> score(size_t(c.n_experts), 0.0);
    double add = 0, mul = 0, div = opt.temperature;
    if (opt.schedule == RoutingSchedule::metaclip) {
        add = K < 10 ? std::exp(0.5 - std::sqrt(double(K))) : 0.0;
        mul = 5.0 * std::log10(std::max(10.0, double(K) - 200.0));
        div = 8.0 * opt.temperature;
    }
    for (const TextRoute& r : route_texts(task, K, c))
        score[size_t(r.expert)] += opt.schedule == RoutingSchedule::paper ? std::exp(-r.d2 / opt.lambda)
                                                                          : std::exp((add - std::sqrt(r.d2)) * mul);
    for (double& x : score) x /= div;
    softmax(score);
    return score;
}

std::vector<double> routing_weights_per_query(const float* queries, int64_t Q, const RoutingCenters& c,
                                              const RoutingOptions& opt) {
    // Checked here: nothing may throw inside the parallel loop.
    CC_CHECK(c.m > 0 && c.n_experts > 0 && c.fine_centers && c.fine_to_expert, "routing: no fine centers");
    CC_CHECK(opt.lambda > 0 && opt.temperature > 0, "routing: lambda and temperature must be positive");
    for (int64_t s = 0; s < c.m; ++s)
        CC_CHECK(c.fine_to_expert[s] >= 0 && c.fine_to_expert[s] < c.n_experts, "routing: fine center ", s,
                 " maps to expert ", c.fine_to_expert[s]);
    std::vector<double> out(size_t(Q * c.n_experts));
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < Q; ++q) {
        const std::vector<double> w = routing_weights(queries + q * c.dim, 1, c, opt);
        std::copy(w.begin(), w.end(), out.begin() + q * c.n_experts);
    }
    return out;
}

}  // namespace curaclip::mode
