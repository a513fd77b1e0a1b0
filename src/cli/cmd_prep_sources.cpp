// `curaclip prep webdataset|csv|tsv|jsonl|folder INPUT... --out DIR [options]`:
// users' own image-text data into a sharded HDF5 dataset (src/prep/prep_job.h,
// docs/data.md "Your own data"). Runs under mpirun: the input units are split
// over the ranks.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/cmd_prep.h"
#include "cli/options.h"
#include "core/check.h"
#include "mpi/communicator.h"
#include "prep/prep_job.h"

namespace curaclip {

int cmd_prep_sources(int argc, char** argv, const Communicator& world) {
    const std::string kind = argv[0];
    const std::string usage =
        "usage: [mpirun -n P] curaclip prep " + kind + " INPUT... --out DIR [options]\n"
        "  webdataset: tar shards (paths, globs, DIR/{00000..00099}.tar, or a folder of *.tar)\n"
        "  csv|tsv|jsonl: one index file with an image path and a caption per row\n"
        "  folder: one sub-folder of images per class (an evaluation set)\n"
        "Writes DIR/NAME.h5 (one dataset over DIR/NAME-shards/*.h5), DIR/NAME.rejects.tsv and\n"
        "DIR/tokenizer.bpe. Never overwrites; a rerun after a kill resumes (docs/data.md).";
    po::options_description desc("prep " + kind);
    desc.add_options()
        ("input", po::value<std::vector<std::string>>()->multitoken(), "inputs (positional)")
        ("out", po::value<std::string>(), "output directory (created if missing)")
        ("name", po::value<std::string>()->default_value("data"), "dataset name: DIR/NAME.h5")
        ("image-size", po::value<int>()->default_value(224), "image side S in pixels (S x S)")
        ("channels", po::value<int>()->default_value(3), "3 (RGB) or 1 (grey)")
        ("resize", po::value<std::string>()->default_value("center_crop"), "center_crop | pad | stretch")
        ("max-pixels", po::value<int64_t>()->default_value(89478485), "refuse larger images (decompression bombs)")
        ("context", po::value<int>()->default_value(77), "token context length")
        ("tokenizer", po::value<std::string>()->default_value(""),
         "merges file (ours, or OpenAI's bpe_simple_vocab_16e6.txt[.gz]); default: DIR/tokenizer.bpe if present, "
         "else one is trained on the captions")
        ("vocab", po::value<int>()->default_value(8192), "vocabulary size of a trained tokenizer")
        ("bpe-sample", po::value<int64_t>()->default_value(200000), "captions a tokenizer is trained on")
        ("max-reject", po::value<double>()->default_value(0.05), "fail when more than this share of samples is bad")
        ("caption-key", po::value<std::string>()->default_value("caption"), "webdataset: .json field with the caption")
        ("csv-img-key", po::value<std::string>()->default_value("filepath"), "csv/tsv/jsonl: image path column")
        ("csv-caption-key", po::value<std::string>()->default_value("title"), "csv/tsv/jsonl: caption column")
        ("csv-label-key", po::value<std::string>()->default_value(""), "csv/tsv/jsonl: integer label column (optional)")
        ("root", po::value<std::string>()->default_value(""), "csv/tsv/jsonl: image paths are relative to this "
         "(default: the index file's folder)")
        ("classnames", po::value<std::string>()->default_value(""), "class names, one per line, in label order")
        ("caption-template", po::value<std::string>()->default_value("a photo of a {}."),
         "folder: caption of each image ({} = class name)")
        ("rows-per-shard", po::value<int64_t>()->default_value(10000), "csv/tsv/jsonl/folder: samples per shard")
        ("allow-missing-shards", po::bool_switch()->default_value(false),
         "webdataset: skip listed tar shards that do not exist (else an error)")
        ("quiet", po::bool_switch()->default_value(false), "no progress lines");
    po::positional_options_description pos;
    pos.add("input", -1);
    const ParsedOptions p = parse_options(argc, argv, desc, usage, &pos);
    if (p.help) return 0;
    const auto& vm = p.vm;
    CC_REQUIRE(vm.count("out"), "prep ", kind, ": --out DIR is required");
    CC_REQUIRE(vm.count("input"), "prep ", kind, ": name the input(s): ",
             kind == "webdataset" ? "tar shards, a glob, DIR/{00000..00099}.tar or a folder of tars"
             : kind == "folder"   ? "the folder with one sub-folder per class"
                                  : "the index file");

    prep::PrepOptions o;
    o.kind = kind;
    o.inputs = vm["input"].as<std::vector<std::string>>();
    o.out_dir = vm["out"].as<std::string>();
    o.name = vm["name"].as<std::string>();
    o.image.size = vm["image-size"].as<int>();
    o.image.channels = vm["channels"].as<int>();
    o.image.resize = prep::parse_resize_mode(vm["resize"].as<std::string>());
    o.image.max_pixels = vm["max-pixels"].as<int64_t>();
    o.context = vm["context"].as<int>();
    o.tokenizer = vm["tokenizer"].as<std::string>();
    o.vocab = vm["vocab"].as<int>();
    o.bpe_sample = vm["bpe-sample"].as<int64_t>();
    o.max_reject = vm["max-reject"].as<double>();
    o.source.caption_key = vm["caption-key"].as<std::string>();
    o.source.img_key = vm["csv-img-key"].as<std::string>();
    o.source.caption_col = vm["csv-caption-key"].as<std::string>();
    o.source.label_col = vm["csv-label-key"].as<std::string>();
    o.source.root = vm["root"].as<std::string>();
    o.source.classnames_file = vm["classnames"].as<std::string>();
    o.source.caption_template = vm["caption-template"].as<std::string>();
    o.source.rows_per_unit = vm["rows-per-shard"].as<int64_t>();
    o.source.allow_missing_shards = vm["allow-missing-shards"].as<bool>();
    o.quiet = vm["quiet"].as<bool>();
    CC_REQUIRE(o.source.rows_per_unit > 0, "prep: --rows-per-shard must be positive, got ", o.source.rows_per_unit);
    CC_REQUIRE(o.vocab >= 514, "prep: --vocab ", o.vocab, " is below the 514 byte symbols and specials");
    CC_REQUIRE(o.source.caption_template.find("{}") != std::string::npos, "prep: --caption-template '",
             o.source.caption_template, "' has no {} for the class name");
    // The command without mpirun: the same on any number of ranks.
    o.creation_command = "curaclip prep";
    for (int i = 0; i < argc; ++i) o.creation_command += std::string(" ") + argv[i];
    prep::run_prep(o, world);
    return 0;
}

}  // namespace curaclip
