// Checked CUDA, cuBLAS, cuDNN and NCCL calls: a failure throws curaclip::Error
// naming the call, its error string, the file and the line (docs/architecture.md §Reliability). The
// caller's top level turns it into an abort of all ranks.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

#include "core/check.h"

#define CC_CUDA_CHECK(call)                                                                      \
    do {                                                                                         \
        const cudaError_t cc_err_ = (call);                                                      \
        if (cc_err_ != cudaSuccess)                                                              \
            ::curaclip::fail_at(__FILE__, __LINE__, ::curaclip::detail::concat(                  \
                #call " failed: ", cudaGetErrorName(cc_err_), ": ", cudaGetErrorString(cc_err_))); \
    } while (0)

#define CC_CUBLAS_CHECK(call)                                                                    \
    do {                                                                                         \
        const cublasStatus_t cc_st_ = (call);                                                    \
        if (cc_st_ != CUBLAS_STATUS_SUCCESS)                                                     \
            ::curaclip::fail_at(__FILE__, __LINE__, ::curaclip::detail::concat(                  \
                #call " failed: ", cublasGetStatusName(cc_st_), ": ", cublasGetStatusString(cc_st_))); \
    } while (0)

#define CC_CUDNN_CHECK(call)                                                                     \
    do {                                                                                         \
        const cudnnStatus_t cc_st_ = (call);                                                     \
        if (cc_st_ != CUDNN_STATUS_SUCCESS)                                                      \
            ::curaclip::fail_at(__FILE__, __LINE__, ::curaclip::detail::concat(                  \
                #call " failed: ", cudnnGetErrorString(cc_st_)));                                \
    } while (0)

#define CC_NCCL_CHECK(call)                                                                      \
    do {                                                                                         \
        const ncclResult_t cc_st_ = (call);                                                      \
        if (cc_st_ != ncclSuccess && cc_st_ != ncclInProgress)                                   \
            ::curaclip::fail_at(__FILE__, __LINE__, ::curaclip::detail::concat(                  \
                #call " failed: ", ncclGetErrorString(cc_st_)));                                 \
    } while (0)
