// `curaclip prep fashion-mnist [options]`: turns the Fashion-MNIST idx files into
// curaclip datasets (train.h5, test.h5, optionally curated.h5) with rich captions
// (src/prep/fashion_mnist_captions.h), a BPE tokenizer trained on the training captions
// (tokenizer.bpe), and optional caption noise. See docs/data.md.
#pragma once

namespace curaclip {

class Communicator;

// argv[0] is "prep"; argv[1] names the source ("fashion-mnist", or one of
// prep::source_kinds() for users' own data). Returns the exit code; throws
// curaclip::Error on bad input (main() prints it). world: null for a single process
// without MPI (Fashion-MNIST only).
int cmd_prep(int argc, char** argv, const Communicator* world);
// The users'-data sources; argv[0] is the source kind (src/cli/cmd_prep_sources.cpp).
int cmd_prep_sources(int argc, char** argv, const Communicator& world);

}  // namespace curaclip
