#include "jest/selector.h"

namespace curaclip::jest {

namespace {
int64_t local_rows(const JestConfig& cfg, int64_t B, int P) {
    cfg.validate(B, P);  // before anything is allocated: the errors name the config
    return B / P;
}
}  // namespace

JestSelector::JestSelector(Backend& backend, Collectives& coll, const Communicator* comm,
                           const JestConfig& cfg, int64_t super_batch, int64_t embed_dim, int64_t tile_rows)
    : sampler_(cfg, super_batch, comm),
      matrix_(backend, coll, cfg.loss, cfg.score, local_rows(cfg, super_batch, coll.size()), embed_dim,
              tile_rows) {
    CC_CHECK(coll.size() == (comm ? comm->size() : 1) && coll.rank() == (comm ? comm->rank() : 0),
             "JEST: collectives (rank ", coll.rank(), " of ", coll.size(), ") and communicator (rank ",
             comm ? comm->rank() : 0, " of ", comm ? comm->size() : 1, ") disagree");
}

Selection JestSelector::select(const ScoringInputs& in, uint64_t step) {
    matrix_.compute(in, block_);
    return sampler_.select(block_, step);
}

}  // namespace curaclip::jest
