from maskwatch.cli import main

main()
