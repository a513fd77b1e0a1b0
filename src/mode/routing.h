// MoDE routing (docs/mode.md §Routing and the ensemble): how much each data expert is trusted on a task,
// from the task's text alone (class names, or queries) and the fine centers.
//
// Both schedules start alike: each task embedding e_l (L2-normalized, in the
// clustering embedding space) keeps only its nearest fine center s*(l) (top-1),
// which belongs to expert c(s*(l)). They differ in how distances become weights:
//
//  paper     (MoDE, Ma et al. 2024, eq. for p(c|T)):
//              A_l = exp(-||e_l - e_s*||^2 / lambda)          (lambda = 0.2)
//              p(c|T) = softmax_c( sum_{l: c(s*(l)) = c} A_l / temperature )
//  metaclip  (the released code, facebookresearch/MetaCLIP mode/post_report_ensemble.py):
//              d_l = ||e_l - e_s*||  (Euclidean, not squared), K = number of task texts,
//              add = exp(0.5 - sqrt(K)) if K < 10 else 0,
//              mul = 5 * log10(max(10, K - 200)),
//              w_c = sum_{l: c(s*(l)) = c} exp((add - d_l) * mul)   (0 for experts no text routes to)
//              p(c|T) = softmax_c( w_c / (8 * temperature) )
//            i.e. a sharpness that grows with the number of classes (log10 K) and
//            a bonus for tasks of very few classes.
// temperature (--routing-temperature, default 1) divides the final logits of either.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace curaclip::mode {

enum class RoutingSchedule { paper, metaclip };
RoutingSchedule parse_routing_schedule(const std::string& s);
const char* routing_schedule_name(RoutingSchedule s);

struct RoutingOptions {
    RoutingSchedule schedule = RoutingSchedule::paper;
    double lambda = 0.2;       // paper: A = exp(-d^2 / lambda)
    double temperature = 1.0;  // divides the softmax logits
};

struct RoutingCenters {
    int64_t m = 0, dim = 0, n_experts = 0;
    const float* fine_centers = nullptr;    // [m, dim]
    const int32_t* fine_to_expert = nullptr;  // [m]
};

// Where one task text goes: its nearest fine center s*, that center's expert
// c(s*), and the squared distance ||e_l - e_s*||^2 (the report's per-class routes).
struct TextRoute {
    int64_t fine = 0;
    int32_t expert = 0;
    double d2 = 0;
};
// The route of each of the K rows of task [K, dim].
std::vector<TextRoute> route_texts(const float* task, int64_t K, const RoutingCenters& centers);

// p(c|T) for the task of the K rows of task [K, dim]; returns [n_experts], sums to 1.
std::vector<double> routing_weights(const float* task, int64_t K, const RoutingCenters& centers,
                                    const RoutingOptions& opt);
// Each of the Q rows of queries [Q, dim] routed as a task of its own: [Q, n_experts].
std::vector<double> routing_weights_per_query(const float* queries, int64_t Q, const RoutingCenters& centers,
                                              const RoutingOptions& opt);

}  // namespace curaclip::mode
