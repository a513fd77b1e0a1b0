// ParameterSet: every trainable tensor of a model under its open_clip state_dict
// name, with its gradient, AdamW moments and (on a bf16 backend) fp32 master copy,
// each kind in its own arena, as llm.c keeps its master weights beside the model.
//
// Layout happens once, through declare(); finalize() then sizes the arenas
// (parameters, gradients, optimizer m, optimizer v, and masters where the backend's
// dtype is narrower than f32) and binds the tensors, so the memory of a model is
// known and printed before step 1.
//
// Master weights (docs/cuda.md "Master weights"): a bf16 parameter is updated by
// AdamW through its fp32 master, so updates below bf16's resolution accumulate. The
// master is the parameter's true value while rounding it still gives the stored bf16
// (core/bf16.h master_agrees); set_value() writes both, values_to_host() reads the
// master where it agrees, so checkpoints keep the fp32 values and a resumed run
// continues from the same masters as an uninterrupted one.
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
    Tensor adam_m;  // f32 (f64 on the f64 reference backend)
    Tensor adam_v;
    Tensor master;  // f32 copy of a bf16 value (what AdamW updates); empty when value is f32/f64
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
    size_t master_bytes() const { return masters_.capacity(); }  // 0 unless the dtype is bf16
    bool has_masters() const { return masters_.capacity() > 0; }

    // Parameter `index` at full precision as float64 host data: its fp32 master where the
    // backend keeps one and it agrees with the stored value, else the stored value.
    // What checkpoints, exports and model-to-model copies read.
    std::vector<double> values_to_host(size_t index);
    std::vector<double> grads_to_host(size_t index);
    // Writes parameter `index` (numel values): the stored value (rounded to the backend's
    // dtype) and, where there is one, the master (these values at fp32). Every load and
    // initialization goes through here, so a master never outlives its value.
    void set_value(size_t index, const float* host);
    void set_value(size_t index, const double* host);

private:
    template <typename H>
    void set_value_from(size_t index, const H* host);

    Backend* backend_;
    std::vector<Parameter> params_;
    bool finalized_ = false;
    Arena values_, grads_, moments_m_, moments_v_, masters_;
};

}  // namespace curaclip
