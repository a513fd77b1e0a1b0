// ParameterSet: every trainable tensor of a model under its open_clip state_dict
// name, with its gradient and AdamW moments, each kind in its own arena.
//
// Layout happens once, through declare(); finalize() then sizes the four arenas
// (parameters, gradients, optimizer m, optimizer v) and binds the tensors, so
// the memory of a model is known and printed before step 1.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/arena.h"

namespace curaclip {

struct Parameter {
    std::string name;  // open_clip key, e.g. "visual.transformer.resblocks.0.ln_1.weight"
    Shape shape;
    bool weight_decay = true;  // false for gains, biases, embeddings, logit scale/bias
    Tensor value;
    Tensor grad;
    Tensor adam_m;  // f32 (or the backend's master dtype)
    Tensor adam_v;
};

// Told during a backward pass that the gradients of parameters [first, first + count)
// are final: no later op of that pass writes them, so their all-reduce may start
// (src/train/grad_buckets.h). An empty function: nobody listens.
using GradsReady = std::function<void(size_t first, size_t count)>;

class ParameterSet {
public:
    explicit ParameterSet(Backend& backend) : backend_(&backend) {}

    // Declares a parameter; returns its index. Only before finalize().
    size_t declare(const std::string& name, Shape shape, bool weight_decay);
    // Allocates the arenas and binds value/grad/m/v of every parameter.
    void finalize();
    bool finalized() const { return finalized_; }

    std::vector<Parameter>& all() { return params_; }
    const std::vector<Parameter>& all() const { return params_; }
    Parameter& operator[](size_t i) { return params_[i]; }
    Parameter& get(const std::string& name);
    const Parameter* find(const std::string& name) const;
    size_t size() const { return params_.size(); }
    int64_t count() const;  // number of scalar parameters

    void zero_grad();
    Backend& backend() { return *backend_; }
    size_t value_bytes() const { return values_.capacity(); }
    size_t grad_bytes() const { return grads_.capacity(); }
    size_t optimizer_bytes() const { return moments_m_.capacity() + moments_v_.capacity(); }

    // Every parameter as float64 host data in declaration order (tests, checkpoints).
    std::vector<double> values_to_host(size_t index);
    std::vector<double> grads_to_host(size_t index);

private:
    Backend* backend_;
    std::vector<Parameter> params_;
    bool finalized_ = false;
    Arena values_, grads_, moments_m_, moments_v_;
};

}  // namespace curaclip
