"""
The crop classifier runs side by side: a markdown table (printed) and val top-1 accuracy
against training CPU-minutes (PNG).

    python tools/crop_classifier_report.py output/crops/* --png docs/studies/second_look_curves.png
"""

import argparse


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders of tools/train_crop_classifier.py")
    p.add_argument("--png", default="output/crop_classifier_curves.png")
    args = p.parse_args(argv)

    from deepacc_d2.studies.crop_report import crop_runs_table, plot_crop_curves

    print(crop_runs_table(args.runs), end="")
    plot_crop_curves({run.rstrip("/").split("/")[-1]: run for run in args.runs}, args.png)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
