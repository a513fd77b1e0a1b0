// cuDNN fused attention (SDPA, flash-style) for the CUDA backend's attention ops,
// through the cuDNN frontend's C++ graph API (cudnn_frontend.h, header-only).
//
// Why the frontend and not the cuDNN backend API directly: the fused SDPA forward and
// backward are each one "node" in the frontend, which expands them into the two dozen
// backend operations (matmuls, scale, causal mask, softmax with stats, dropout hooks,
// the backward's dP / dS chain) that cuDNN's fused engines pattern-match. Writing that
// expansion by hand against the backend API is several hundred lines that must match
// the engines' expected graph exactly, with no GPU here to catch a mismatch; the
// frontend is NVIDIA's maintained spelling of it (PyTorch uses the same). The price is
// one header-only dependency, fetched by jobs/install_deps.sh (PyPI nvidia-cudnn-frontend,
// headers only). Where the headers are absent at build time this file compiles to
// "never available" and the own kernels (attention.cu) run.
//
// Layout, as the backend lays it out (backend.h): qkv [B,T,3C] = q | k | v, head h at
// columns [h*hs, (h+1)*hs) of each third. cuDNN takes any strides, so q, k, v are
// views [B, NH, T, hs] with strides {T*3C, hs, 3C, 1} at offsets 0, C, 2C; out and dout
// [B,T,C] are {T*C, hs, C, 1}. stats [B,NH,T] (fp32) is cuDNN's Stats tensor
// {B, NH, T, 1} with packed strides: the natural-log log-sum-exp of the scaled scores
// per query row, which is exactly what the own forward kernel stores, so a forward of
// one path and a backward of the other mix freely.
//
// Decisions (cuda/sdpa_policy.h, tested on the host) are made once per backend and once
// per shape: the first attention call creates the cuDNN handle, and a cuDNN that cannot
// start (missing or mismatched sub-libraries) is a refusal for every shape, said once;
// the first call with a new (B, T, NH, hs, causal, direction) builds the graph (validate,
// lower, heuristics, check_support, plan build) and caches it, or caches the refusal
// (the message goes to stderr once) and the own kernel runs for that shape from then on.
// An execution failure of a graph cuDNN accepted is an Error, not a silent fallback.
//
// The backward: cuDNN writes dQ, dK, dV, but backend.h's backward ops accumulate, so
// they land in scratch [B,T,3C] and are added to dqkv (one extra pass over B*T*3C bf16,
// small next to the attention itself). It asks for cuDNN's deterministic algorithm first
// (the rest of the backend has no atomics in numerical paths); where that variant is
// refused it takes the default one and says so once, or, with
// CURACLIP_CUDA_DETERMINISTIC=1, runs the own kernel for that shape.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/cuda_ops.h"
#include "cuda/sdpa_policy.h"

#ifdef CURACLIP_HAVE_CUDNN_FRONTEND
#include <cudnn_frontend.h>
#endif

namespace curaclip::cuda {

#ifdef CURACLIP_HAVE_CUDNN_FRONTEND

namespace fe = cudnn_frontend;
using TensorAttr = std::shared_ptr<fe::graph::Tensor_attributes>;

namespace {

// One built graph, or a refusal (graph == nullptr).
struct SdpaGraph {
    std::shared_ptr<fe::graph::Graph> graph;
    TensorAttr q, k, v, o, stats, dout, dq, dk, dv;
    int64_t workspace = 0;
    SdpaPath path = SdpaPath::own_kernel;
};

// (B, T, NH, hs, causal, backward)
using SdpaKey = std::tuple<int, int, int, int, bool, bool>;

std::string key_str(const SdpaKey& k) {
    return detail::concat(std::get<5>(k) ? "backward" : "forward", " B=", std::get<0>(k), " T=", std::get<1>(k),
                          " heads=", std::get<2>(k), " head_dim=", std::get<3>(k),
                          std::get<4>(k) ? " causal" : "");
}

}  // namespace

struct SdpaCache {
    explicit SdpaCache(SdpaOptions o)
        : policy(o, [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); }) {}
    SdpaPolicy policy;
    cudnnHandle_t handle = nullptr;
    std::map<SdpaKey, SdpaGraph> graphs;
};

namespace {

SdpaCache& cache_of(Context& c) {
    if (!c.sdpa) {
        SdpaOptions o;
        o.enabled = c.use_cudnn_sdpa;
        o.deterministic_only = c.deterministic_attention;
        c.sdpa = new SdpaCache(o);
    }
    return *c.sdpa;
}

// Whether cuDNN is usable: the handle is created at the first call; a failure (a node
// whose cuDNN sub-libraries are missing or mismatched) is a refusal, said once.
bool cudnn_ready(Context& c) {
    SdpaCache& cache = cache_of(c);
    return cache.policy.started([&]() -> std::string {
        const cudnnStatus_t st = cudnnCreate(&cache.handle);
        if (st == CUDNN_STATUS_SUCCESS) return "";
        cache.handle = nullptr;
        return detail::concat("cudnnCreate: ", cudnnGetErrorString(st), ", cuDNN ", cudnnGetVersion(),
                              " loaded, built against ", CUDNN_VERSION);
    });
}

// The q/k/v views of qkv [B,T,3C] and the [B,T,C] layout of out/dout, as cuDNN tensors.
struct Views {
    std::vector<int64_t> dim, qkv_stride, o_stride, stats_dim, stats_stride;
};
Views views_for(int B, int T, int NH, int hs) {
    const int64_t C = int64_t(NH) * hs, C3 = 3 * C;
    Views v;
    v.dim = {B, NH, T, hs};
    v.qkv_stride = {int64_t(T) * C3, hs, C3, 1};
    v.o_stride = {int64_t(T) * C, hs, C, 1};
    v.stats_dim = {B, NH, T, 1};
    v.stats_stride = {int64_t(NH) * T, T, 1, 1};
    return v;
}

TensorAttr input(fe::graph::Graph& g, const char* name, const std::vector<int64_t>& dim,
                 const std::vector<int64_t>& stride, fe::DataType_t dt) {
    return g.tensor(fe::graph::Tensor_attributes().set_name(name).set_dim(dim).set_stride(stride).set_data_type(dt));
}

std::shared_ptr<fe::graph::Graph> new_graph() {
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    return g;
}

// Validate, lower, pick a plan and build it; false (with the reason) where cuDNN refuses.
bool build(SdpaCache& cache, SdpaGraph& sg, std::string& why) {
    fe::error_t st = sg.graph->build(cache.handle, {fe::HeurMode_t::A});
    if (!st.is_good()) {
        why = st.get_message();
        return false;
    }
    fe::error_t ws = sg.graph->get_workspace_size(sg.workspace);
    if (!ws.is_good()) {
        why = ws.get_message();
        return false;
    }
    return true;
}

SdpaGraph build_forward(SdpaCache& cache, const SdpaKey& key, std::string& why) {
    const auto [B, T, NH, hs, causal, bwd] = key;
    (void)bwd;
    const Views w = views_for(B, T, NH, hs);
    SdpaGraph sg;
    sg.graph = new_graph();
    fe::graph::Graph& g = *sg.graph;
    sg.q = input(g, "q", w.dim, w.qkv_stride, fe::DataType_t::BFLOAT16);
    sg.k = input(g, "k", w.dim, w.qkv_stride, fe::DataType_t::BFLOAT16);
    sg.v = input(g, "v", w.dim, w.qkv_stride, fe::DataType_t::BFLOAT16);
    fe::graph::SDPA_attributes attr;
    attr.set_name("sdpa_forward")
        .set_generate_stats(true)
        .set_attn_scale(float(1.0 / std::sqrt(double(hs))))
        .set_causal_mask(causal);
    auto [o, stats] = g.sdpa(sg.q, sg.k, sg.v, attr);
    o->set_output(true).set_dim(w.dim).set_stride(w.o_stride).set_data_type(fe::DataType_t::BFLOAT16);
    stats->set_output(true).set_dim(w.stats_dim).set_stride(w.stats_stride).set_data_type(fe::DataType_t::FLOAT);
    sg.o = o;
    sg.stats = stats;
    if (!build(cache, sg, why)) sg.graph.reset();
    return sg;
}

SdpaGraph build_backward(SdpaCache& cache, const SdpaKey& key, bool deterministic, std::string& why) {
    const auto [B, T, NH, hs, causal, bwd] = key;
    (void)bwd;
    const Views w = views_for(B, T, NH, hs);
    SdpaGraph sg;
    sg.graph = new_graph();
    fe::graph::Graph& g = *sg.graph;
    sg.q = input(g, "q", w.dim, w.qkv_stride, fe::DataType_t::BFLOAT16);
    sg.k = input(g, "k", w.dim, w.qkv_stride, fe::DataType_t::BFLOAT16);
    sg.v = input(g, "v", w.dim, w.qkv_stride, fe::DataType_t::BFLOAT16);
    sg.o = input(g, "o", w.dim, w.o_stride, fe::DataType_t::BFLOAT16);
    sg.dout = input(g, "dO", w.dim, w.o_stride, fe::DataType_t::BFLOAT16);
    sg.stats = input(g, "stats", w.stats_dim, w.stats_stride, fe::DataType_t::FLOAT);
    fe::graph::SDPA_backward_attributes attr;
    attr.set_name("sdpa_backward")
        .set_attn_scale(float(1.0 / std::sqrt(double(hs))))
        .set_causal_mask(causal)
        .set_deterministic_algorithm(deterministic);
    auto [dq, dk, dv] = g.sdpa_backward(sg.q, sg.k, sg.v, sg.o, sg.dout, sg.stats, attr);
    // dQ, dK, dV go to a scratch [B,T,3C] laid out like qkv (see the file comment).
    for (const TensorAttr& t : {dq, dk, dv})
        t->set_output(true).set_dim(w.dim).set_stride(w.qkv_stride).set_data_type(fe::DataType_t::BFLOAT16);
    sg.dq = dq;
    sg.dk = dk;
    sg.dv = dv;
    if (!build(cache, sg, why)) sg.graph.reset();
    return sg;
}

// The cached graph of `key`, built (or refused) on first use; the policy decides.
const SdpaGraph& graph_for(Context& c, const SdpaKey& key) {
    SdpaCache& cache = cache_of(c);
    auto it = cache.graphs.find(key);
    if (it != cache.graphs.end()) return it->second;
    SdpaGraph sg;
    if (!std::get<5>(key)) {
        const SdpaPath path = cache.policy.forward(key_str(key), [&](std::string& why) {
            sg = build_forward(cache, key, why);
            return sg.graph != nullptr;
        });
        sg.path = path;
    } else {
        const SdpaPath path = cache.policy.backward(key_str(key), [&](bool deterministic, std::string& why) {
            sg = build_backward(cache, key, deterministic, why);
            return sg.graph != nullptr;
        });
        sg.path = path;
    }
    if (sg.path == SdpaPath::own_kernel) sg.graph.reset();
    return cache.graphs.emplace(key, std::move(sg)).first->second;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The cheap host-side reasons not to ask cuDNN at all (per call: pointers differ).
bool eligible(const Context& c, int NH, int hs, const Tensor& stats, std::initializer_list<const void*> ptrs) {
    if (!c.use_cudnn_sdpa) return false;
    if (stats.dtype != DType::f32) return false;  // cuDNN's Stats are fp32 only
    // Row strides and the k/v offsets are multiples of C; 16-byte alignment needs C % 8 == 0.
    if (hs % 8 != 0 || (int64_t(NH) * hs) % 8 != 0) return false;
    for (const void* p : ptrs)
        if (!aligned16(p)) return false;
    return true;
}

void* offset(void* p, int64_t elems) { return static_cast<char*>(p) + elems * 2; }  // bf16 elements

void execute(Context& c, const SdpaGraph& sg, std::unordered_map<TensorAttr, void*>& pack, void* workspace,
             const SdpaKey& key) {
    CC_CUDNN_CHECK(cudnnSetStream(c.sdpa->handle, c.stream));
    fe::error_t st = sg.graph->execute(c.sdpa->handle, pack, workspace);
    CC_CHECK(st.is_good(), "cuDNN SDPA ", key_str(key), " failed to execute: ", st.get_message(),
             " (CURACLIP_CUDA_NO_CUDNN_SDPA=1 runs the own kernels instead)");
}

}  // namespace

bool cudnn_sdpa_forward(Context& c, Tensor out, Tensor stats, Tensor qkv, int B, int T, int NH, int hs,
                        bool causal) {
    if (!eligible(c, NH, hs, stats, {out.data, stats.data, qkv.data}) || !cudnn_ready(c)) return false;
    const SdpaKey key{B, T, NH, hs, causal, false};
    const SdpaGraph& sg = graph_for(c, key);
    if (!sg.graph) return false;
    const int64_t C = int64_t(NH) * hs;
    void* ws = c.scratch(size_t(std::max<int64_t>(sg.workspace, 1)));
    std::unordered_map<TensorAttr, void*> pack = {
        {sg.q, qkv.data}, {sg.k, offset(qkv.data, C)}, {sg.v, offset(qkv.data, 2 * C)},
        {sg.o, out.data}, {sg.stats, stats.data}};
    execute(c, sg, pack, ws, key);
    return true;
}

bool cudnn_sdpa_backward(Context& c, Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor stats, int B, int T,
                         int NH, int hs, bool causal) {
    if (!eligible(c, NH, hs, stats, {dqkv.data, dout.data, qkv.data, out.data, stats.data}) || !cudnn_ready(c))
        return false;
    const SdpaKey key{B, T, NH, hs, causal, true};
    const SdpaGraph& sg = graph_for(c, key);
    if (!sg.graph) return false;
    const int64_t C = int64_t(NH) * hs;
    // One scratch block: the dQ|dK|dV staging [B,T,3C] bf16, then cuDNN's workspace.
    const size_t grad_bytes = ScratchCarver::round_up(size_t(qkv.bytes()));
    ScratchCarver carve(c.scratch(grad_bytes + ScratchCarver::round_up(size_t(std::max<int64_t>(sg.workspace, 1)))));
    void* grads = carve.take<char>(grad_bytes);
    void* ws = carve.take<char>(size_t(std::max<int64_t>(sg.workspace, 1)));
    std::unordered_map<TensorAttr, void*> pack = {
        {sg.q, qkv.data},          {sg.k, offset(qkv.data, C)}, {sg.v, offset(qkv.data, 2 * C)},
        {sg.o, out.data},          {sg.dout, dout.data},        {sg.stats, stats.data},
        {sg.dq, grads},            {sg.dk, offset(grads, C)},   {sg.dv, offset(grads, 2 * C)}};
    execute(c, sg, pack, ws, key);
    accumulate(c, dqkv, Tensor{grads, DType::bf16, qkv.shape});  // backend.h: backward ops accumulate
    return true;
}

void release_sdpa(Context& c) {
    if (!c.sdpa) return;
    SdpaCache* cache = c.sdpa;
    c.sdpa = nullptr;
    cache->graphs.clear();
    if (cache->handle) (void)cudnnDestroy(cache->handle);  // destructor path: errors ignored
    delete cache;
}

std::string sdpa_report(const Context& c) {
    if (!c.use_cudnn_sdpa) return "cuDNN SDPA off (CURACLIP_CUDA_NO_CUDNN_SDPA=1): own attention kernels";
    if (!c.sdpa) return "cuDNN SDPA available, not used yet";
    std::string r = c.sdpa->policy.unavailable_note();
    if (r.empty() && c.sdpa->graphs.empty()) return "cuDNN SDPA available, not used yet";
    if (c.deterministic_attention) r += std::string(r.empty() ? "" : "; ") + "deterministic attention only";
    for (const auto& [key, sg] : c.sdpa->graphs) {
        if (!r.empty()) r += "; ";
        r += key_str(key) + ": " + sdpa_path_name(sg.path);
    }
    return r;
}

#else  // no cuDNN frontend headers at build time: the own kernels always run

struct SdpaCache {};

bool cudnn_sdpa_forward(Context&, Tensor, Tensor, Tensor, int, int, int, int, bool) { return false; }
bool cudnn_sdpa_backward(Context&, Tensor, Tensor, Tensor, Tensor, Tensor, int, int, int, int, bool) {
    return false;
}
void release_sdpa(Context& c) { c.sdpa = nullptr; }
std::string sdpa_report(const Context&) {
    return "built without the cuDNN frontend headers: own attention kernels";
}

#endif

}  // namespace curaclip::cuda
