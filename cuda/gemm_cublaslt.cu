// Matrix products of the CUDA backend: bf16 operands, fp32 accumulation.
//   * linear_forward: cuBLASLt with the bias epilogue (one kernel for x W^T + b);
//     falls back to cublasGemmEx + a bias broadcast where Lt finds no algorithm, a
//     pointer is not 16-byte aligned, or CURACLIP_CUDA_NO_LT=1 is set.
//   * matmul and the linear backward: cublasGemmEx (any transposes, alpha, beta).
// Row-major tensors are handed to the column-major BLAS as their transposes:
// row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so the operands
// swap places and keep their own transpose flags.
#include <climits>

#include "cuda/cuda_device.cuh"

namespace curaclip::cuda {

namespace {

constexpr int kThreads = 256;

void check_blas_dim(int64_t v, const char* what) {
    CC_CHECK(v >= 0 && v <= INT_MAX, "gemm: ", what, " = ", v, " does not fit a BLAS int");
}

size_t alignment_of(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    size_t al = 256;
    while (al > 1 && (a % al) != 0) al >>= 1;
    return al;
}

__global__ void broadcast_rows_kernel(bf16* out, const bf16* bias, int64_t rows, int64_t cols) {
    CC_GRID_STRIDE(i, rows * cols) out[i] = bias[i % cols];
}

// RAII for the cuBLASLt descriptors of one call.
struct LtCall {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    ~LtCall() {
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        if (d) cublasLtMatrixLayoutDestroy(d);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (op) cublasLtMatmulDescDestroy(op);
    }
};

// out[N,OC] = inp[N,C] W[OC,C]^T (+ bias) through cuBLASLt; false when Lt has no algorithm.
bool lt_linear(Context& c, void* out, const void* inp, const void* w, const void* bias, int64_t N,
               int64_t C, int64_t OC) {
    const void* const ptrs[] = {out, inp, w, bias};
    for (const void* p : ptrs)
        if (p && alignment_of(p) < 16) return false;
    LtCall call;
    CC_CUBLAS_CHECK(cublasLtMatmulDescCreate(&call.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (bias) {
        const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        CC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        CC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                       sizeof bias));
        const cudaDataType_t bias_type = CUDA_R_16BF;
        CC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                       sizeof bias_type));
    }
    // Column-major views: W is [C, OC] (ld C), used transposed; inp is [C, N] (ld C);
    // out is [OC, N] (ld OC). The bias runs along OC, the rows of the column-major out.
    CC_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&call.a, CUDA_R_16BF, uint64_t(C), uint64_t(OC), C));
    CC_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&call.b, CUDA_R_16BF, uint64_t(C), uint64_t(N), C));
    CC_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&call.d, CUDA_R_16BF, uint64_t(OC), uint64_t(N), OC));
    CC_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&call.pref));
    const uint64_t ws = c.lt_workspace_bytes;
    CC_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(call.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &ws, sizeof ws));
    const uint32_t al_a = uint32_t(alignment_of(w)), al_b = uint32_t(alignment_of(inp));
    const uint32_t al_d = uint32_t(alignment_of(out));
    CC_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(call.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                         &al_a, sizeof al_a));
    CC_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(call.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                         &al_b, sizeof al_b));
    CC_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(call.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                         &al_d, sizeof al_d));
    CC_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(call.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                         &al_d, sizeof al_d));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c.lt, call.op, call.a, call.b, call.d, call.d,
                                                             call.pref, 1, &result, &found);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED || found == 0) return false;
    CC_CUBLAS_CHECK(st);
    const float alpha = 1.0f, beta = 0.0f;
    CC_CUBLAS_CHECK(cublasLtMatmul(c.lt, call.op, &alpha, w, call.a, inp, call.b, &beta, out, call.d, out, call.d,
                                   &result.algo, c.lt_workspace, c.lt_workspace_bytes, c.stream));
    return true;
}

}  // namespace

void gemm_ex(Context& c, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
             const void* A, int64_t lda, const void* B, int64_t ldb, cudaDataType_t ab_type, float beta,
             void* C, int64_t ldc, cudaDataType_t c_type, bool pedantic) {
    if (M == 0 || N == 0) return;
    check_blas_dim(M, "M");
    check_blas_dim(N, "N");
    check_blas_dim(K, "K");
    check_blas_dim(lda, "lda");
    check_blas_dim(ldb, "ldb");
    check_blas_dim(ldc, "ldc");
    if (K == 0) {
        // op(A) op(B) is empty: C = beta C (cuBLAS's k = 0 behaviour is not relied on).
        Tensor ct{C, c_type == CUDA_R_32F ? DType::f32 : DType::bf16, Shape{M, ldc}};
        CC_CHECK(ldc == N, "internal: gemm with K = 0 on a strided C");
        if (beta == 0.0f) fill(c, ct, 0.0f);
        else scale(c, ct, beta);
        return;
    }
    const cublasOperation_t opA = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opB = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int la = int(std::max<int64_t>(lda, 1)), lb = int(std::max<int64_t>(ldb, 1));
    CC_CUBLAS_CHECK(cublasGemmEx(c.blas, opB, opA, int(N), int(M), int(K), &alpha, B, ab_type, lb, A, ab_type, la,
                                 &beta, C, c_type, int(ldc),
                                 pedantic ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
}

void matmul(Context& c, Tensor out, Tensor a, Tensor b, bool trans_a, bool trans_b, float alpha, float beta) {
    check_bf16(out, "matmul", "out");
    check_bf16(a, "matmul", "a");
    check_bf16(b, "matmul", "b");
    // Shapes: checked by Backend::matmul (backend/op_contracts.cpp).
    const int64_t ac = a.shape.cols(), bc = b.shape.cols();
    const int64_t M = out.shape.rows(), N = out.shape.cols(), K = trans_a ? a.shape.rows() : ac;
    gemm_ex(c, trans_a, trans_b, M, N, K, alpha, a.data, ac, b.data, bc, CUDA_R_16BF, beta, out.data, N,
            CUDA_R_16BF);
}

void linear_forward(Context& c, Tensor out, Tensor inp, Tensor weight, Tensor bias) {
    const char* op = "linear_forward";
    check_bf16(out, op, "out");
    check_bf16(inp, op, "inp");
    check_bf16(weight, op, "weight");
    if (!bias.empty()) check_bf16(bias, op, "bias");
    const int64_t N = inp.shape.rows(), C = inp.shape.cols(), OC = weight.shape[0];
    if (N == 0 || OC == 0) return;
    check_blas_dim(N, "N");
    check_blas_dim(C, "C");
    check_blas_dim(OC, "OC");
    if (c.use_lt && C > 0 &&
        lt_linear(c, out.data, inp.data, weight.data, bias.empty() ? nullptr : bias.data, N, C, OC))
        return;
    // Fallback: out = bias broadcast, then out += inp W^T.
    if (!bias.empty()) {
        broadcast_rows_kernel<<<grid_for(N * OC, kThreads), kThreads, 0, c.stream>>>(
            out.as<bf16>(), bias.as<bf16>(), N, OC);
        check_launch(op);
    }
    gemm_ex(c, false, true, N, OC, C, 1.0f, inp.data, C, weight.data, C, CUDA_R_16BF, bias.empty() ? 0.0f : 1.0f,
            out.data, OC, CUDA_R_16BF);
}

void linear_backward(Context& c, Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp,
                     Tensor weight) {
    const char* op = "linear_backward";
    check_bf16(dout, op, "dout");
    check_bf16(weight, op, "weight");
    const int64_t OC = weight.shape[0], C = weight.shape[1], N = dout.shape.rows();
    if (!dinp.empty()) {
        check_bf16(dinp, op, "dinp");
        // dinp[N,C] += dout[N,OC] W[OC,C]
        gemm_ex(c, false, false, N, C, OC, 1.0f, dout.data, OC, weight.data, C, CUDA_R_16BF, 1.0f, dinp.data, C,
                CUDA_R_16BF);
    }
    if (!dweight.empty()) {
        check_bf16(dweight, op, "dweight");
        check_bf16(inp, op, "inp");
        // dW[OC,C] += dout^T[OC,N] inp[N,C]
        gemm_ex(c, true, false, OC, C, N, 1.0f, dout.data, OC, inp.data, C, CUDA_R_16BF, 1.0f, dweight.data, C,
                CUDA_R_16BF);
    }
    if (!dbias.empty()) {
        check_bf16(dbias, op, "dbias");
        column_sums_add(c, dbias.data, dout.data, N, OC, OC);
    }
}

}  // namespace curaclip::cuda
