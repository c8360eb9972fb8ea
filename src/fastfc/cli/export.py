"""`fastfc export`: a saved model in another format (ONNX)."""
from .model_files import load_model, spec_path
from .options import CommandError, add_saved_model_argument
from .outputs import check_output_paths, say


def add_export_parser(subparsers):
    parser = subparsers.add_parser(
        "export", help="write a saved model as ONNX",
        description="Write a model saved by fastfc train --save as an ONNX graph for onnxruntime and "
                    "other ONNX runtimes: input 'input', images (N, C, H, W) scaled to [0, 1] as "
                    "fastfc predict scales them (the saved normalisation is part of the graph); "
                    "output 'scores', (N, classes), whose argmax is the predicted class. "
                    "Needs onnx (pip install onnx).")
    add_saved_model_argument(parser)
    parser.add_argument("--onnx", required=True, metavar="MODEL.onnx", help="the ONNX file to write")
    parser.set_defaults(run=run_export)


def run_export(args):
    check_output_paths([("--onnx", args.onnx, True)],
                       inputs=[("--model", args.model), ("--model's description", spec_path(args.model))])
    model, spec = load_model(args.model)
    from ..export import export_onnx
    try:
        export_onnx(model, args.onnx, input_shape=spec["input_shape"], mean=spec["mean"], std=spec["std"])
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    shape = ", ".join(map(str, spec["input_shape"]))
    say(f"wrote {args.onnx}: input (N, {shape}) images in [0, 1], output scores (N, "
        f"{len(spec['class_names'])}) for {', '.join(spec['class_names'])}")
    return 0
