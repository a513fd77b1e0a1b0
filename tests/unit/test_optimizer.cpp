// AdamW against a scalar re-implementation of torch.optim.AdamW (+ torch's
// clip_grad_norm_), the cosine schedule against open_clip's cosine_lr, and the
// rejection of bad configurations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "optim/adamw.h"
#include "optim/lr_schedule.h"

namespace curaclip {
namespace {

using Vec = std::vector<double>;

// torch.optim.AdamW._single_tensor_adamw, element by element, in double. The
// hyperparameters are rounded to float as AdamW hands them to the backend.
struct TorchAdamW {
    double b1, b2, eps, wd;
    struct State {
        Vec p, m, v;
        bool decay;
    };
    std::vector<State> params;

    void step(int64_t step, double lr, double clip_scale, const std::vector<Vec>& grads) {
        const double f_lr = double(float(lr)), f_b1 = double(float(b1)), f_b2 = double(float(b2));
        const double f_eps = double(float(eps)), f_clip = double(float(clip_scale));
        for (size_t k = 0; k < params.size(); ++k) {
            State& s = params[k];
            const double f_wd = s.decay ? double(float(wd)) : 0.0;
            for (size_t i = 0; i < s.p.size(); ++i) {
                const double g = grads[k][i] * f_clip;
                s.p[i] *= 1.0 - f_lr * f_wd;                          // param.mul_(1 - lr*wd)
                s.m[i] += (g - s.m[i]) * (1.0 - f_b1);                // exp_avg.lerp_(grad, 1-b1)
                s.v[i] = s.v[i] * f_b2 + (1.0 - f_b2) * g * g;        // exp_avg_sq.mul_(b2).addcmul_
                const double bc1 = 1.0 - std::pow(f_b1, double(step));
                const double bc2 = 1.0 - std::pow(f_b2, double(step));
                const double denom = std::sqrt(s.v[i]) / std::sqrt(bc2) + f_eps;
                s.p[i] -= (f_lr / bc1) * s.m[i] / denom;              // addcdiv_(-step_size)
            }
        }
    }
};

// torch.nn.utils.clip_grad_norm_: total norm and clip coefficient.
double global_norm(const std::vector<Vec>& grads) {
    double s = 0.0;
    for (const Vec& g : grads)
        for (double x : g) s += x * x;
    return std::sqrt(s);
}

struct Model {
    std::unique_ptr<Backend> be = make_backend("cpu-f64");
    ParameterSet ps{*be};
    Model() {
        ps.declare("visual.proj", {3, 4}, true);
        ps.declare("visual.ln_post.bias", {4}, false);
        ps.declare("logit_scale", {1}, false);
        ps.finalize();
    }
    void set_values(const std::vector<Vec>& v) {
        for (size_t k = 0; k < ps.size(); ++k) be->upload(ps[k].value, v[k].data());
    }
    void set_grads(const std::vector<Vec>& g) {
        for (size_t k = 0; k < ps.size(); ++k) be->upload(ps[k].grad, g[k].data());
    }
};

std::vector<Vec> initial_values() {
    Vec w(12), b(4);
    for (size_t i = 0; i < w.size(); ++i) w[i] = 0.1 * double(i) - 0.5;
    for (size_t i = 0; i < b.size(); ++i) b[i] = 0.25 * double(i) - 0.3;
    return {w, b, Vec{2.0}};
}

// Gradients of step s: varied signs and magnitudes, global norm above and below 1.
std::vector<Vec> grads_of_step(int s) {
    const double amp = s % 2 == 0 ? 0.9 : 0.05;
    Vec w(12), b(4);
    for (size_t i = 0; i < w.size(); ++i) w[i] = amp * std::sin(1.3 * double(i) + 0.7 * s);
    for (size_t i = 0; i < b.size(); ++i) b[i] = amp * std::cos(0.9 * double(i) - 0.4 * s);
    return {w, b, Vec{amp * (s % 3 == 0 ? -1.0 : 0.5)}};
}

void expect_values(Model& m, const std::vector<TorchAdamW::State>& want, const std::string& what) {
    for (size_t k = 0; k < m.ps.size(); ++k) {
        const Vec got = m.ps.values_to_host(k);
        for (size_t i = 0; i < got.size(); ++i)
            EXPECT_NEAR(got[i], want[k].p[i], 1e-12 + 1e-9 * std::abs(want[k].p[i]))
                << what << ": " << m.ps[k].name << "[" << i << "]";
    }
}

OptimizerConfig test_config() {
    OptimizerConfig c;
    c.lr = 1e-2;
    c.beta1 = 0.9;
    c.beta2 = 0.98;
    c.eps = 1e-6;
    c.weight_decay = 0.2;
    c.warmup_steps = 2;
    c.total_steps = 6;
    c.grad_clip_norm = 1.0;
    return c;
}

TEST(AdamW, FiveStepsMatchTorchFormulas) {
    Model m;
    const OptimizerConfig cfg = test_config();
    AdamW opt(m.ps, cfg);
    const CosineSchedule sched(cfg.lr, cfg.warmup_steps, cfg.total_steps, cfg.min_lr);

    TorchAdamW ref{cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, {}};
    const auto init = initial_values();
    for (size_t k = 0; k < init.size(); ++k)
        ref.params.push_back({init[k], Vec(init[k].size()), Vec(init[k].size()), m.ps[k].weight_decay});
    m.set_values(init);

    bool clipped = false, unclipped = false;
    for (int s = 0; s < 5; ++s) {
        const auto g = grads_of_step(s);
        m.set_grads(g);
        const double norm = global_norm(g);
        const double clip = std::min(1.0, cfg.grad_clip_norm / (norm + 1e-6));
        (clip < 1.0 ? clipped : unclipped) = true;

        const double got_norm = opt.step();
        EXPECT_FALSE(opt.skipped());
        EXPECT_NEAR(got_norm, norm, 1e-12 * norm) << "step " << s;
        EXPECT_NEAR(opt.last_clip_scale(), clip, 1e-12) << "step " << s;
        EXPECT_DOUBLE_EQ(opt.last_lr(), sched.lr(s)) << "step " << s;
        EXPECT_EQ(opt.steps_done(), s + 1);

        ref.step(s + 1, sched.lr(s), clip, g);
        // The logit_scale clamp (inactive here: the value stays near 2).
        ref.params[2].p[0] = std::clamp(ref.params[2].p[0], 0.0, std::log(100.0));
        expect_values(m, ref.params, "step " + std::to_string(s));
    }
    EXPECT_TRUE(clipped && unclipped) << "the test should exercise both clipping cases";
}

TEST(AdamW, NoDecayWhereFlagged) {
    Model m;
    OptimizerConfig cfg = test_config();
    cfg.warmup_steps = 0;
    cfg.lr = 0.1;
    AdamW opt(m.ps, cfg);
    const auto init = initial_values();
    m.set_values(init);
    m.ps.zero_grad();  // zero gradients: the update is decay only
    EXPECT_EQ(opt.step(), 0.0);
    const double factor = 1.0 - double(float(0.1)) * double(float(0.2));
    const Vec w = m.ps.values_to_host(0), b = m.ps.values_to_host(1), t = m.ps.values_to_host(2);
    for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(w[i], init[0][i] * factor, 1e-15);
    for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(b[i], init[1][i]);
    EXPECT_EQ(t[0], init[2][0]);
}

TEST(AdamW, ClipScaleIsTorchFormula) {
    Model m;
    OptimizerConfig cfg = test_config();
    cfg.grad_clip_norm = 0.5;
    AdamW opt(m.ps, cfg);
    auto g = grads_of_step(0);
    m.set_grads(g);
    const double norm = global_norm(g);
    EXPECT_NEAR(opt.step(), norm, 1e-12);
    EXPECT_NEAR(opt.last_clip_scale(), 0.5 / (norm + 1e-6), 1e-15);
    // Clipping off: scale 1 whatever the norm.
    Model m2;
    cfg.grad_clip_norm = 0.0;
    AdamW off(m2.ps, cfg);
    for (auto& v : g)
        for (auto& x : v) x *= 100.0;
    m2.set_grads(g);
    off.step();
    EXPECT_EQ(off.last_clip_scale(), 1.0);
}

TEST(AdamW, ClampsLogitScale) {
    OptimizerConfig cfg = test_config();
    cfg.warmup_steps = 0;
    cfg.lr = 0.1;
    cfg.grad_clip_norm = 0.0;
    // A first Adam step moves every element by ~lr against its gradient's sign.
    auto run = [&](double start, double grad) {
        Model m;
        AdamW opt(m.ps, cfg);
        auto init = initial_values();
        init[0][0] = 10.0;  // far above ln 100: not the logit scale, never clamped
        init[2][0] = start;
        m.set_values(init);
        auto g = grads_of_step(1);
        g[0][0] = -1.0;
        g[2][0] = grad;
        m.set_grads(g);
        opt.step();
        EXPECT_GT(m.ps.values_to_host(0)[0], 9.0);  // 10 - decay - lr: not clamped
        return m.ps.values_to_host(2)[0];
    };
    EXPECT_NEAR(run(4.6, -1.0), std::log(100.0), 1e-6);  // crosses ln 100 upward
    EXPECT_EQ(run(0.05, 1.0), 0.0);                      // crosses 0 downward
    EXPECT_NEAR(run(2.0, 1.0), 2.0 - 0.1, 1e-6);         // in range: untouched
}

TEST(AdamW, NonFiniteGradientSkipsTheStep) {
    Model m;
    AdamW opt(m.ps, test_config());
    const auto init = initial_values();
    m.set_values(init);
    auto g = grads_of_step(0);
    g[1][2] = std::nan("");
    m.set_grads(g);
    EXPECT_TRUE(std::isnan(opt.step()));
    EXPECT_TRUE(opt.skipped());
    EXPECT_EQ(opt.steps_done(), 0);
    for (size_t k = 0; k < init.size(); ++k) EXPECT_EQ(m.ps.values_to_host(k), init[k]);
}

TEST(AdamW, ResumeFromStepCountContinuesIdentically) {
    const OptimizerConfig cfg = test_config();
    Model a, b;
    a.set_values(initial_values());
    b.set_values(initial_values());
    AdamW opt_a(a.ps, cfg);
    for (int s = 0; s < 5; ++s) {
        a.set_grads(grads_of_step(s));
        opt_a.step();
    }
    {
        AdamW first(b.ps, cfg);
        for (int s = 0; s < 3; ++s) {
            b.set_grads(grads_of_step(s));
            first.step();
        }
    }
    AdamW resumed(b.ps, cfg);  // moments live in the ParameterSet; the step count is restored
    resumed.set_steps_done(3);
    for (int s = 3; s < 5; ++s) {
        b.set_grads(grads_of_step(s));
        resumed.step();
    }
    for (size_t k = 0; k < a.ps.size(); ++k) EXPECT_EQ(a.ps.values_to_host(k), b.ps.values_to_host(k));
    EXPECT_THROW(resumed.set_steps_done(-1), Error);
}

// train.init_optimizer: a new run (steps_done 0, its own schedule) on the moments of
// another, whose bias correction continues from their step count. With a constant
// learning rate it is the uninterrupted run, bit for bit; without the offset it is not.
TEST(AdamW, MomentStepOffsetContinuesTheBiasCorrection) {
    OptimizerConfig cfg = test_config();
    cfg.warmup_steps = 0;
    cfg.min_lr = cfg.lr;  // constant: the schedules of the two runs agree
    Model a, b, c;
    for (Model* m : {&a, &b, &c}) m->set_values(initial_values());
    AdamW opt_a(a.ps, cfg);
    for (int s = 0; s < 5; ++s) {
        a.set_grads(grads_of_step(s));
        opt_a.step();
    }
    for (Model* m : {&b, &c}) {
        AdamW first(m->ps, cfg);
        for (int s = 0; s < 3; ++s) {
            m->set_grads(grads_of_step(s));
            first.step();
        }
    }
    AdamW carried(b.ps, cfg), restarted(c.ps, cfg);
    carried.set_moment_step_offset(3);
    EXPECT_EQ(carried.moment_step_offset(), 3);
    for (int s = 3; s < 5; ++s) {
        b.set_grads(grads_of_step(s));
        carried.step();
        c.set_grads(grads_of_step(s));
        restarted.step();  // bias correction from step 1 on moments of 3 steps: a larger update
    }
    EXPECT_EQ(carried.steps_done(), 2);
    for (size_t k = 0; k < a.ps.size(); ++k) {
        EXPECT_EQ(a.ps.values_to_host(k), b.ps.values_to_host(k)) << a.ps[k].name;
        EXPECT_NE(a.ps.values_to_host(k), c.ps.values_to_host(k)) << a.ps[k].name;
    }
    EXPECT_THROW(carried.set_moment_step_offset(-1), Error);
}

TEST(CosineSchedule, MatchesOpenClipCosineLr) {
    const double base = 1e-3;
    const CosineSchedule s(base, 10, 110);
    // Warmup: base * (step + 1) / warmup.
    EXPECT_DOUBLE_EQ(s.lr(0), 1e-4);
    EXPECT_DOUBLE_EQ(s.lr(4), 5e-4);
    EXPECT_DOUBLE_EQ(s.lr(9), 1e-3);
    // Cosine: 0.5 * (1 + cos(pi * e / es)) * base, e = step - warmup, es = total - warmup.
    EXPECT_DOUBLE_EQ(s.lr(10), base);
    EXPECT_NEAR(s.lr(60), 0.5 * base, 1e-18);
    EXPECT_DOUBLE_EQ(s.lr(35), 0.5 * (1 + std::cos(std::numbers::pi * 25 / 100)) * base);
    EXPECT_DOUBLE_EQ(s.lr(109), 0.5 * (1 + std::cos(std::numbers::pi * 99 / 100)) * base);
    EXPECT_EQ(s.lr(110), 0.0);
    EXPECT_EQ(s.lr(500), 0.0);  // stays at the floor (open_clip's formula would rise again)
    // min_lr floor.
    const CosineSchedule f(base, 10, 110, 1e-5);
    EXPECT_DOUBLE_EQ(f.lr(60), 1e-5 + 0.5 * (base - 1e-5));
    EXPECT_DOUBLE_EQ(f.lr(110), 1e-5);
    // No warmup; warmup == total.
    EXPECT_DOUBLE_EQ(CosineSchedule(base, 0, 100).lr(0), base);
    const CosineSchedule w(base, 5, 5);
    EXPECT_DOUBLE_EQ(w.lr(4), base);
    EXPECT_EQ(w.lr(5), 0.0);
    EXPECT_THROW(s.lr(-1), Error);
}

void expect_rejected(OptimizerConfig c, const std::string& word) {
    try {
        c.validate();
        ADD_FAILURE() << "config with bad " << word << " accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
    }
}

TEST(OptimizerConfig, RejectsBadValues) {
    OptimizerConfig ok = test_config();
    EXPECT_NO_THROW(ok.validate());
    auto with = [&](auto f) {
        OptimizerConfig c = ok;
        f(c);
        return c;
    };
    expect_rejected(with([](auto& c) { c.lr = -1e-3; }), "lr");
    expect_rejected(with([](auto& c) { c.lr = std::nan(""); }), "lr");
    expect_rejected(with([](auto& c) { c.beta1 = 1.0; }), "beta1");
    expect_rejected(with([](auto& c) { c.beta2 = -0.1; }), "beta2");
    expect_rejected(with([](auto& c) { c.eps = 0.0; }), "eps");
    expect_rejected(with([](auto& c) { c.weight_decay = -0.1; }), "weight_decay");
    expect_rejected(with([](auto& c) { c.grad_clip_norm = -1.0; }), "grad_clip_norm");
    expect_rejected(with([](auto& c) { c.warmup_steps = 7; }), "warmup_steps");
    expect_rejected(with([](auto& c) { c.warmup_steps = -1; }), "warmup_steps");
    expect_rejected(with([](auto& c) { c.total_steps = 0; }), "total_steps");
    expect_rejected(with([](auto& c) { c.min_lr = 1.0; }), "min_lr");
    Model m;
    EXPECT_THROW(AdamW(m.ps, with([](auto& c) { c.warmup_steps = 100; })), Error);
    auto be = make_backend("cpu-f64");
    ParameterSet unfinished(*be);
    EXPECT_THROW(AdamW(unfinished, ok), Error);
}

}  // namespace
}  // namespace curaclip
