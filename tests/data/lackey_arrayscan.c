#include <stdlib.h>
#include <stdio.h>
int main(void){
  size_t n = 1<<14; long *a = malloc(n*sizeof *a);
  for (size_t i=0;i<n;i++) a[i]=i;
  long s=0; for (size_t i=0;i<n;i+=7) s+=a[(i*613)%n];
  printf("%ld\n", s); free(a); return 0;}
