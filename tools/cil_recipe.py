#!/usr/bin/env python
"""The CPU recipe on real metaphases (`make cil`): deepacc_d2/studies/recipe.py, docs/cil.md."""

from deepacc_d2.studies.recipe import main

if __name__ == "__main__":
    main()
