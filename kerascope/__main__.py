"""`python -m kerascope --logdir runs`: serve the dashboard (the same as the `kerascope` command)."""

from kerascope.app.cli import main

if __name__ == "__main__":
    main()
