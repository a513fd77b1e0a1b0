// `curaclip prep fashion-mnist [options]`: turns the Fashion-MNIST idx files into
// curaclip datasets (train.h5, test.h5, optionally curated.h5) with rich captions
// (io/captions.h), a BPE tokenizer trained on the training captions
// (tokenizer.bpe), and optional caption noise. See docs/data.md.
#pragma once

namespace curaclip {

// argv[0] is "prep"; argv[1] names the source ("fashion-mnist"). Returns the
// exit code; throws curaclip::Error on bad input (main() prints it).
int cmd_prep(int argc, char** argv);

}  // namespace curaclip
