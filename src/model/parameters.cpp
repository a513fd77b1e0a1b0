#include "model/parameters.h"

namespace curaclip {

size_t ParameterSet::declare(const std::string& name, Shape shape, bool weight_decay) {
    CC_CHECK(!finalized_, "declare('", name, "') after finalize()");
    CC_CHECK(find(name) == nullptr, "parameter '", name, "' declared twice");
    params_.push_back(Parameter{name, shape, weight_decay, {}, {}, {}, {}});
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
    for (auto& p : params_) {
        p.value = values_.alloc(p.shape, dt);
        p.grad = grads_.alloc(p.shape, dt);
        p.adam_m = moments_m_.alloc(p.shape, master);
        p.adam_v = moments_v_.alloc(p.shape, master);
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
    std::vector<double> out(size_t(params_.at(index).shape.numel()));
    backend_->download(out.data(), params_[index].value);
    return out;
}

std::vector<double> ParameterSet::grads_to_host(size_t index) {
    std::vector<double> out(size_t(params_.at(index).shape.numel()));
    backend_->download(out.data(), params_[index].grad);
    return out;
}

}  // namespace curaclip
