"""Training methods (ordinary / unbalanced GAN, BEGAN, RFGAN, GAAN), one file each behind one step
interface (`base.Method`). `table` picks a class by name; `catalog` says what each accepts."""
