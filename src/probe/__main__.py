from probe._entry import main

main()
