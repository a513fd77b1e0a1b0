#include "model/parameters.h"

#include "core/bf16.h"

namespace curaclip {

size_t ParameterSet::declare(const std::string& name, Shape shape, bool weight_decay) {
    CC_CHECK(!finalized_, "declare('", name, "') after finalize()");
    CC_CHECK(find(name) == nullptr, "parameter '", name, "' declared twice");
    params_.push_back(Parameter{name, shape, weight_decay, {}, {}, {}, {}, {}});
    return params_.size() - 1;
}

void ParameterSet::finalize() {
    CC_CHECK(!finalized_, "finalize() called twice");
    const DType dt = backend_->dtype();
    // Optimizer moments are kept in fp32 at least (fp64 on the fp64 reference backend).
    const DType master = dt == DType::f64 ? DType::f64 : DType::f32;
    Arena measure_value, measure_master;
    for (auto& p : params_) {
        measure_value.alloc(p.shape, dt);
        measure_master.alloc(p.shape, master);
    }
    values_ = Arena(*backend_, measure_value.used(), "parameters");
    grads_ = Arena(*backend_, measure_value.used(), "gradients");
    moments_m_ = Arena(*backend_, measure_master.used(), "adam_m");
    moments_v_ = Arena(*backend_, measure_master.used(), "adam_v");
    // A compute dtype narrower than f32 (bf16) gets fp32 masters beside the values. They
    // start at zero (arenas are zero-filled), which agrees only with values that are zero: every other element is
    // seeded from its value by the first AdamW step (or written by set_value before).
    const bool with_masters = dtype_size(dt) < dtype_size(DType::f32);
    if (with_masters) masters_ = Arena(*backend_, measure_master.used(), "masters");
    for (auto& p : params_) {
        p.value = values_.alloc(p.shape, dt);
        p.grad = grads_.alloc(p.shape, dt);
        p.adam_m = moments_m_.alloc(p.shape, master);
        p.adam_v = moments_v_.alloc(p.shape, master);
        if (with_masters) p.master = masters_.alloc(p.shape, DType::f32);
    }
    finalized_ = true;
}

Parameter& ParameterSet::get(const std::string& name) {
    for (auto& p : params_)
        if (p.name == name) return p;
    CC_FAIL("no parameter named '", name, "'");
}

const Parameter* ParameterSet::find(const std::string& name) const {
    for (const auto& p : params_)
        if (p.name == name) return &p;
    return nullptr;
}

int64_t ParameterSet::count() const {
    int64_t n = 0;
    for (const auto& p : params_) n += p.shape.numel();
    return n;
}

void ParameterSet::zero_grad() {
    CC_CHECK(finalized_, "zero_grad() before finalize()");
    for (auto& p : params_) backend_->fill(p.grad, 0.0f);
}

std::vector<double> ParameterSet::values_to_host(size_t index) {
    const Parameter& p = params_.at(index);
    std::vector<double> out(size_t(p.shape.numel()));
    backend_->download(out.data(), p.value);
    if (p.master.empty()) return out;
    std::vector<float> master(out.size());
    backend_->download(master.data(), p.master);
    for (size_t i = 0; i < out.size(); ++i)
        if (master_agrees(master[i], float(out[i]))) out[i] = double(master[i]);
    return out;
}

template <typename H>
void ParameterSet::set_value_from(size_t index, const H* host) {
    Parameter& p = params_.at(index);
    backend_->upload(p.value, host);
    if (!p.master.empty()) backend_->upload(p.master, host);
}

void ParameterSet::set_value(size_t index, const float* host) { set_value_from(index, host); }
void ParameterSet::set_value(size_t index, const double* host) { set_value_from(index, host); }

std::vector<double> ParameterSet::grads_to_host(size_t index) {
    std::vector<double> out(size_t(params_.at(index).shape.numel()));
    backend_->download(out.data(), params_[index].grad);
    return out;
}

}  // namespace curaclip
