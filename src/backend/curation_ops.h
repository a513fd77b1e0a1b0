// The kernels of the data-curation methods, as an extension of the backend
// interface (the model ops are backend/backend.h): JEST's pairwise sigmoid loss matrix
// and MoDE's nearest-center assignment. Like flashlight's domain extensions, they
// live apart from what a model needs, and a backend provides them through
// Backend::curation().
//
// The argument contracts every backend shares (shapes, offsets, scalars) are checked
// once, here, before the backend's kernel runs; a kernel checks only what is its own
// (the dtypes it computes in). Errors are internal invariants (check failed: ...):
// callers size these tensors themselves.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace curaclip {

class CurationOps {
public:
    virtual ~CurationOps() = default;

    // ---- JEST ------------------------------------------------------------------------------
    // Pairwise sigmoid (SigLIP) loss matrix of a row block (docs/jest.md §One JEST step): dots [M,N] as for
    // sigmoid_pairwise_rows (rows: this rank's images, columns: all texts), t = logit_scale[0],
    // b = logit_bias[0]; nll [M,N] (overwritten) is
    //   nll[i,j] = -log sigmoid(z_ij (exp(t) dot_ij + b)) = softplus(-z_ij (exp(t) dot_ij + b)),
    //   z_ij = +1 iff j == label_offset + i, -1 otherwise.
    // The learnability L = NLL_learner - NLL_reference is then scale(nll_ref, -1) + add.
    // nll may alias dots (in place).
    void pairwise_sigmoid_nll(Tensor nll, Tensor dots, Tensor logit_scale, Tensor logit_bias, int64_t label_offset);
    // ---- end JEST ----------------------------------------------------------------------------

    // ---- k-means ----------------------------------------------------------------------------
    // Nearest center of each point (MoDE clustering, src/mode/kmeans.h): for x [N,D] and
    // centers [K,D], assign[i] = argmin_k ||x_i - c_k||^2 (i32 [N]; ties -> the lowest k) and
    // dist[i] = that squared distance (compute dtype [N]). center_sq_norms [K] (compute dtype,
    // given by the caller) must be ||c_k||^2 of the centers as stored (after their rounding to
    // the compute dtype), rounded once. Evaluated as GEMM + argmin: v_k = n_k - 2 x_i.c_k
    // screen the centers, n_k being those norms at fp32 precision or better (a backend with
    // a narrower compute dtype, cuda's bf16, computes n_k from the stored centers itself:
    // bf16 norms err by ~100x the screen's bound, issue 16), and every center within the
    // error bound of the GEMM and of n_k of the smallest v is re-scored by the float64
    // distance summed in a fixed order
    // (four interleaved partial sums over d mod 4, combined as (s0 + s1) + (s2 + s3)),
    // which decides (and is dist). So the result of row i depends only on x_i and the
    // centers, not on N, the row's position, the block size or the threads: a point gets
    // the same answer whatever block of a distributed data set it sits in.
    // scratch [B,K] (B >= 1, compute dtype) holds the dot products of B rows at a time; its
    // contents afterwards are unspecified.
    void kmeans_assign(Tensor assign, Tensor dist, Tensor x, Tensor centers, Tensor center_sq_norms,
                       Tensor scratch);

protected:
    // The backend's kernels, called with arguments whose shapes were checked.
    virtual void pairwise_sigmoid_nll_kernel(Tensor nll, Tensor dots, Tensor logit_scale, Tensor logit_bias,
                                             int64_t label_offset) = 0;
    virtual void kmeans_assign_kernel(Tensor assign, Tensor dist, Tensor x, Tensor centers, Tensor center_sq_norms,
                                      Tensor scratch) = 0;
};

}  // namespace curaclip
