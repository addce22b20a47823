"""`python -m kerascope --logdir runs`: serve the dashboard."""

from kerascope.app.cli import main

if __name__ == "__main__":
    main()
