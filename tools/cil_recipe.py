#!/usr/bin/env python
"""The CPU recipe on real metaphases (`make cil`): see deepacc_d2/recipe.py and docs/cil.md."""

from deepacc_d2.recipe import main

if __name__ == "__main__":
    main()
