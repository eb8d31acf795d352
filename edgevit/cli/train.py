"""``edgevit train MODEL --data DIR|digits``: fine-tune a zoo model, write safetensors + labels."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a zoo model on an image folder or the bundled digits",
        description="Fine-tune a zoo model (AdamW, cosine schedule) and write its weights as safetensors "
        "together with the class labels.",
    )
    p.add_argument("model", help="zoo model name (edgevit models)")
    p.add_argument("--data", required=True, help="image folder (one sub-folder per class) or 'digits'")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training split (default 10)")
    p.add_argument("--image-size", type=int, default=None, help="train at this size (default: the model's)")
    p.add_argument("--batch-size", type=int, default=64, help="images per optimizer step (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate, cosine-decayed (default 0.001)")
    p.add_argument("--weights", default=None, help="start from these weights (default: random init)")
    p.add_argument("--out", default=None, help="output .safetensors (default: <model>-<data>.safetensors)")
    p.add_argument("--threads", type=int, default=None,
                   help="PyTorch CPU threads (default: PyTorch's choice; on a shared machine 1 is often fastest)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="also write the metrics as JSON: per-epoch loss and validation top-1, the settings, "
                        "the weights file and the time taken")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgevit.cli.models import zoo_name

    args.model = zoo_name(args.model)  # before torch is imported

    import time

    from edgevit._files import check_output_file, write_json, write_or_rescue
    from edgevit.data.datasets import load_dataset
    from edgevit.errors import InvalidArgumentError
    from edgevit.models import create_model
    from edgevit.train import TrainConfig, dataset_spec, save_weights, train

    if args.threads is not None:
        if args.threads < 1:
            raise InvalidArgumentError(f"--threads must be a positive integer, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out or f"{args.model}-{Path(str(args.data)).name}.safetensors")
    if out.suffix != ".safetensors":
        raise InvalidArgumentError(f"--out must end in .safetensors, got {str(out)!r}")
    if out.parent.exists() and not out.parent.is_dir():
        raise InvalidArgumentError(f"--out folder {str(out.parent)!r} is not a folder")
    check_output_file(out, "--out")
    if args.json:
        check_output_file(args.json, "--json")
    train_set = load_dataset(args.data, "train")
    val_set = load_dataset(args.data, "val")
    model = create_model(args.model, weights=args.weights, num_classes=train_set.num_classes,
                         image_size=args.image_size)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, image_size=args.image_size)
    spec = dataset_spec(args.model, train_set, args.image_size)
    start = time.perf_counter()
    result = train(model, train_set, val_set, config, spec, progress=None if not args.quiet else False)
    seconds = time.perf_counter() - start
    metadata = {"model": args.model, "image_size": str(spec.size), "data": str(args.data)}
    write_or_rescue(out, lambda path: save_weights(model, path, labels=train_set.classes, metadata=metadata))
    top1 = result.final_top1
    if args.json:
        metrics = {"model": args.model, "data": str(args.data), "weights": str(out), "image_size": spec.size,
                   "train_images": len(train_set), "val_images": len(val_set), "classes": list(train_set.classes),
                   "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seconds": round(seconds, 2),
                   "final_val_top1": top1, "history": result.history}
        write_or_rescue(args.json, lambda path: write_json(path, metrics))
    print(f"wrote {out} ({len(train_set)} training images, {train_set.num_classes} classes"
          + (f", validation top-1 {top1:.2f}%" if top1 is not None else "") + ")")
    return 0
