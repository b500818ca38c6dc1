"""``python -m checkpoint_solver``: the command-line interface."""

from checkpoint_solver.cli import main

if __name__ == "__main__":
    main()
