from ionm_logic.cli import main
main()
