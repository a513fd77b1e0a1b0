#include "backend/curation_ops.h"

#include <limits>

#include "core/check.h"

namespace curaclip {

namespace {
void check_elements(const Tensor& t, int64_t n, const char* op, const char* what) {
    CC_CHECK(!t.empty() || n == 0, op, ": ", what, " is empty");
    CC_CHECK(t.numel() == n, op, ": ", what, " ", t.shape.str(), " should have ", n, " elements");
}
}  // namespace

void CurationOps::pairwise_sigmoid_nll(Tensor nll, Tensor dots, Tensor logit_scale, Tensor logit_bias,
                                       int64_t label_offset) {
    const char* op = "pairwise_sigmoid_nll";
    const int64_t M = dots.shape.rows(), N = dots.shape.cols();
    CC_CHECK(nll.shape.rows() == M && nll.shape.cols() == N, op, ": nll ", nll.shape.str(), " differs from dots ",
             dots.shape.str());
    CC_CHECK(label_offset >= 0 && label_offset + M <= N, op, ": label_offset ", label_offset,
             " puts the positives of ", M, " rows outside the ", N, " columns of dots ", dots.shape.str());
    check_elements(logit_scale, 1, op, "logit_scale");
    check_elements(logit_bias, 1, op, "logit_bias");
    pairwise_sigmoid_nll_kernel(nll, dots, logit_scale, logit_bias, label_offset);
}

void CurationOps::kmeans_assign(Tensor assign, Tensor dist, Tensor x, Tensor centers, Tensor center_sq_norms,
                                Tensor scratch) {
    const char* op = "kmeans_assign";
    CC_CHECK(assign.dtype == DType::i32, op, ": assign has dtype ", dtype_name(assign.dtype), ", expected i32");
    const int64_t N = x.shape.rows(), D = x.shape.cols(), K = centers.shape.rows();
    CC_CHECK(K >= 1, op, ": centers ", centers.shape.str(), " hold no center");
    CC_CHECK(K <= std::numeric_limits<int32_t>::max(), op, ": ", K, " centers do not fit i32 ids");
    CC_CHECK(centers.shape.cols() == D, op, ": centers ", centers.shape.str(), " have dimension ",
             centers.shape.cols(), " but the points x ", x.shape.str(), " have ", D);
    check_elements(assign, N, op, "assign");
    check_elements(dist, N, op, "dist");
    check_elements(center_sq_norms, K, op, "center_sq_norms");
    CC_CHECK(scratch.shape.cols() == K && scratch.shape.rows() >= 1, op, ": scratch ", scratch.shape.str(),
             " should be [B, ", K, "] with B >= 1");
    kmeans_assign_kernel(assign, dist, x, centers, center_sq_norms, scratch);
}

}  // namespace curaclip
