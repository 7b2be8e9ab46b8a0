"""`make demo`: walks through what exists so far (later issues extend it)."""


def main() -> None:
    print("Hyperwall demo: nothing to show yet.")


if __name__ == "__main__":
    main()
